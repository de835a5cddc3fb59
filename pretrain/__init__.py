"""Pretraining MSM-MAE and MAE-AST: data, masking objectives and the training loop (`hear-maeast pretrain`)."""
