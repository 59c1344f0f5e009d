"""talkgraph's node library: media I/O, audio features, face geometry and the papers' networks."""
