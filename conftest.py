"""Project-wide pytest set-up: the book's claims are strict under the test runner.

``pytest --nbval`` starts each chapter's kernel with this process's environment, so a claim that
does not hold fails the notebook (elsewhere, e.g. in Colab, it only shows a notice). See
:mod:`segbook.notebook`.
"""
import os

os.environ["SEGBOOK_STRICT_CLAIMS"] = "1"
