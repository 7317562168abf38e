"""Golden vectors and the on-device checker: what a phone (or a browser) must reproduce, and the one
implementation that judges it."""
