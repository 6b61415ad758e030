"""Textual screens: they present the services' results and never do the work themselves."""
