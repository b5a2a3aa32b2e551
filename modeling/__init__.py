"""Remote-code modeling files (the Allocator) shipped flat next to the weights on the Hub."""
