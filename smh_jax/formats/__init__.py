"""On-disk formats: the dense export, the compressed artifact, the warm start's loading."""
