"""smdebug.core: modes, save configs and collections."""
