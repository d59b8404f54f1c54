"""Helpers for tests of vizsla and of projects built on it: generated image folders, broken files.

Import the module you need (`from vizsla.testing.images import make_image_folder`); nothing heavy loads here.
"""
