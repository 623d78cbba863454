"""Bulk scoring without a server: a file in process (``--engine local``) or files on Ray Data
(``--engine ray``), with the model runtime loaded here. The HTTP client (``sentiment_client``) needs none
of this; this package builds on its file handling and on ``model_runtime``."""
