"""Presentation shared by the terminal and the browser: pictures and progress, no logic."""
