"""Column names of the raw schema and the audio file suffixes, shared by every layer.

Its own module, importing nothing, so that a stage or the inference core can name a column
without depending on the data sources' loading code (and rerunning when that code changes).
"""

AUDIO = "audio"
LABEL = "intent_class"
PROBLEM = "problem"
SPLIT = "split"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
