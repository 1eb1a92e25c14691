"""The device's local layer: name safety, ignore rules, the SQLite index, scanner and watcher."""
