__version__ = '0.70.0'
