"""nbstream: ksqlDB inside a Jupyter notebook.

``Engine`` is the embedded streaming engine; the notebook layer (``%load_ext nbstream``) and the
Kafka backend are imported on first use.
"""

from nbstream.errors import NbstreamError
from nbstream.runtime.engine import Engine

__all__ = ["Engine", "NbstreamError"]
__version__ = "0.1.0"
