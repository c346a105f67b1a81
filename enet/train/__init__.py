"""Training: the config (the seed's recipe as defaults, ``config``), the run folder
(``run_folder``) and the training loop (``engine``)."""
