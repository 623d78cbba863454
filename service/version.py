"""The one version of the package and the service: pyproject.toml reads it (``[tool.setuptools.dynamic]``),
the OpenAPI document and the Open Inference Protocol's server metadata report it. CHANGELOG.md says what
each version changed."""

SERVICE_VERSION = "5.0.0"
