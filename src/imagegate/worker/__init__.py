"""Running jobs: the runner does one attempt; a dispatcher decides when."""
