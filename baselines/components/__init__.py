"""Parts shared by methods or trained outside them (source heads): one idea per module."""
