"""A tiny pets API for pets.yaml to call: GET /api/v3/pet/{petId} and POST /api/v3/pet, on 127.0.0.1:9000.

Run it next to the runner: `python docs/examples/openapi/pets_api.py` (a port as its argument to use
another one). Standard library only; the pets live in memory.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PETS: dict[int, dict[str, object]] = {1: {"id": 1, "name": "Rex", "status": "available"}}


class Pets(BaseHTTPRequestHandler):
    def answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def refused(self) -> bool:
        """The key pets.yaml's headers send; any other caller gets 401."""
        if self.headers.get("X-Api-Key") == "dev-key":
            return False
        self.answer(401, {"message": "X-Api-Key missing or wrong"})
        return True

    def do_GET(self) -> None:  # GET /api/v3/pet/{petId}: getPetById
        if self.refused():
            return
        _, _, pet_id = self.path.rpartition("/api/v3/pet/")
        pet = PETS.get(int(pet_id)) if pet_id.isdigit() else None
        if pet is None:
            return self.answer(404, {"message": "Pet not found"})
        self.answer(200, pet)

    def do_POST(self) -> None:  # POST /api/v3/pet: addPet
        if self.refused():
            return
        pet = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path != "/api/v3/pet" or not isinstance(pet, dict) or "name" not in pet:
            return self.answer(400, {"message": "Invalid input"})
        pet.setdefault("id", max(PETS, default=0) + 1)
        PETS[int(pet["id"])] = pet
        self.answer(200, pet)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if sys.argv[1:] else 9000), Pets).serve_forever()
