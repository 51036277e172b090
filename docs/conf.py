"""Sphinx configuration of the graphforget documentation (``sphinx-build -W -b html docs docs/_build``)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))  # document the checkout, installed or not

from sphinx.ext.napoleon.docstring import GoogleDocstring  # noqa: E402

from graphforget import __version__  # noqa: E402

project = "graphforget"
author = "graphforget developers"
copyright = "graphforget developers"
release = version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style docstrings
    "sphinx.ext.mathjax",   # the formulas in ``.. math::`` blocks
    # MathJax from the package into _static/mathjax, so formulas render offline (no CDN)
    "sphinx-mathjax-offline",
]
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_typehints = "signature"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as fields (no duplicates of NamedTuple/dataclass members)

# Nitpicky (-n): every cross-reference resolves. The build is offline (no intersphinx inventories), so the
# references to other projects' objects (in annotations, and in torch's docstrings that methods inherit) stay
# plain text; graphforget's own must all resolve.
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|torch_geometric)(\..+)?"),
    (r"py:.*", r"(Tensor|HeteroData)"),  # torch's and PyG's, as a NamedTuple's string annotations name them
    (r"py:.*", r"(os|pathlib|abc|argparse)(\..+)?"),  # the standard library
    (r"py:func", r"repr"),  # Python's builtins
    (r"py:class", r"tuple\[float"),  # a dataclass's ``tuple[float, ...]`` that Sphinx split at its comma
    (r"py:class", r"graphforget\.influence\.dot_product\._PairMatrix"),  # a private alias in a signature
]

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = []


def _attribute_docstring_as_written(self) -> list[str]:
    """An attribute's or property's docstring as written. Napoleon reads its first line as ``type: description``,
    but graphforget's are sentences (the annotations carry the types): "Kinds of run: ..." rendered as "Type: Kinds
    of run"."""
    return self._consume_to_end()


GoogleDocstring._parse_attribute_docstring = _attribute_docstring_as_written
