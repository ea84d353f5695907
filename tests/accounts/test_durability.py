"""An acknowledged write survives the server's kill -9 (the PDP's client asks for j: true)."""

import threading
import time

import pymongo

from pdp.accounts.store import connect_database
from tests.support.mongo_server import start_mongo


def test_acknowledged_writes_survive_kill9():
    server = start_mongo()
    try:
        db = connect_database(server.mongodb_uri, 1500)
        acked, stop = [], threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                try:
                    db.durability.insert_one({"_id": i})
                    acked.append(i)
                except pymongo.errors.PyMongoError:
                    pass
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(1.5)
        server.proc.kill()  # while writes are being acknowledged
        server.proc.wait(5)
        stop.set()
        thread.join(10)
        server = start_mongo(server.port, server.workdir)
        again = pymongo.MongoClient(server.mongodb_uri, serverSelectionTimeoutMS=5000).get_default_database()
        present = {d["_id"] for d in again.durability.find({}, {"_id": 1})}
        assert len(acked) > 20
        assert [i for i in acked if i not in present] == []
    finally:
        server.stop()
