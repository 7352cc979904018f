"""nbstream: ksqlDB inside a Jupyter notebook.

``Engine`` is the embedded streaming engine; ``%load_ext nbstream`` registers the ``%%stream``
magics (IPython is imported then), ``current_engine()`` is the engine they run on, and the Kafka
backend is imported on first use. ``@nbstream.udf``, ``@nbstream.udtf`` and ``@nbstream.udaf``
register Python functions callable from SQL (:mod:`nbstream.udfs`).
"""

from nbstream.errors import NbstreamError
from nbstream.notebook import current_engine, load_ipython_extension
from nbstream.runtime.engine import Engine
from nbstream.udfs import udaf, udf, udtf

__all__ = ["Engine", "NbstreamError", "current_engine", "load_ipython_extension", "udaf", "udf", "udtf"]
__version__ = "0.1.0"
