"""DS01: the package installed on the shared GPU server.

Holds the one policy model (`ds01.config`), the one naming vocabulary
(`ds01.names`) and the runtime tools that run between deploys.
"""

__version__ = "0.1.0"
