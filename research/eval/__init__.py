"""Analysis of trained networks, moved out of the paper modules so it can be
imported and tested: deconvnet projections and occlusion (deconvnet_vis), the
attack battery (attack_battery, attack_curves), GAN scores (gan_eval, parzen,
frechet, baselines, gan_figures), paper tables (paper_tables), training speed
(training_speed), conv stacks (conv_stacks), augmentation examples
(augment_examples), STN's transformers and table (stn_analysis); and the figures:
`plots` (the one save helper, shared figures) and `<topic>_plots` beside it.

The eval layer imports ops, models, data and train, never launch
(tests/test_layers.py)."""
