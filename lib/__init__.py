"""Angular-margin losses and their fairness for face recognition: the library behind the notebooks."""

__version__ = "0.1.0"
