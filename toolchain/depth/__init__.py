"""Depth input: DEPTH16 frames, a ToF sensor simulator, registration to the RGB camera, and readers.

Frame flow (one direction): scene or sensor -> DEPTH16 frame -> registered depth at RGB resolution.
This package does not segment, blur or composite; those stages read its output.
"""
