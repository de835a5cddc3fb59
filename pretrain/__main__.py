"""`python -m pretrain ...` and `torchrun --nproc-per-node N -m pretrain ...`: the same flags as `hear-maeast pretrain`."""

from pretrain.cli import pretrain

if __name__ == "__main__":
    pretrain(prog_name="python -m pretrain")
