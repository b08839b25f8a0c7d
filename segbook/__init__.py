"""segbook: the tested companion package of the segbook Jupyter Book.

Importing segbook never touches the network and never downloads anything.
"""
__version__ = "0.1.0"

__all__ = ["__version__"]
