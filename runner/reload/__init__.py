"""Live reload: watch files, re-import the user's changed modules fresh, rebuild off to the side, swap atomically."""
