"""Configuration templates: installed as ``servicehop_caldav.templates``."""
