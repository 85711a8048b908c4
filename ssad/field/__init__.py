"""ssad in the field: a live monitor that scores audio from files, folders, stdin or MQTT as it arrives."""
