"""Analysis of trained networks, moved out of the paper modules so it can be
imported and tested: deconvnet projections and occlusion (deconvnet_vis), the
attack battery (attack_battery, attack_curves), GAN scores (gan_eval, parzen,
frechet, baselines, gan_figures), paper tables (paper_tables), training speed
(training_speed), conv stacks (conv_stacks), augmentation examples
(augment_examples); and `plots`, the one module that draws figures.

The eval layer imports ops, models, data and train, never launch
(tests/test_layers.py)."""
