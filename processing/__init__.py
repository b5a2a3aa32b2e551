"""Remote-code processing files shipped flat next to the weights on the Hub (importable as resadapt_hf.processing)."""
