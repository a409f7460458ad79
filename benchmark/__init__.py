"""LVEF regression benchmark: compare regression heads on echocardiography video under identical splits.

Importing this package is cheap; torch and the other heavy libraries load only where they are used.
"""
__version__ = "0.1.0"
