"""``IsolateWorker``: an object living in an isolate, its methods called like local ones."""
