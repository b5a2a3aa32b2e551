"""``python -m resadapt_hf.evaluate ARGS`` and ``torchrun --nproc_per_node N -m resadapt_hf.evaluate ARGS``."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
