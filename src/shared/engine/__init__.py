"""The face engine: decode, detect, embed, match, annotate, video frames. Pure: no AWS in it.

Import the submodules (`shared.engine.faces`, `.decode`, ...) directly; this package imports
nothing, so that code needing only matching or decoding does not load dlib.
"""
