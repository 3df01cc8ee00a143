"""One order end to end against `make run` (sandbox mode). Usage:
OFFERHUB_API_KEY=$(python manage.py create_api_key --name example --scopes read,write | tail -1) python one_order.py"""

import os
import time
import uuid

import requests
from offerhub_client import NotFoundError, OfferHub

BASE = os.environ.get("OFFERHUB_URL", "http://127.0.0.1:8000")
hub = OfferHub(os.environ["OFFERHUB_API_KEY"], base_url=BASE)


def wait_for(check, what, seconds=90):
    for _ in range(seconds):
        try:
            if result := check():
                return result
        except NotFoundError:  # WALLET_NOT_FOUND while the wallet is being created
            pass
        time.sleep(1)
    raise SystemExit(f"timed out waiting for {what}")


run = uuid.uuid4().hex[:8]
buyer = hub.users.create(external_user_id=f"buyer-{run}")
seller = hub.users.create(external_user_id=f"seller-{run}")
address = wait_for(lambda: hub.wallet.deposit_address(buyer["id"])["address"], "the buyer's wallet")
requests.post(f"{BASE}/sandbox/horizon/faucet", data={"addr": address, "amount": "50"}, timeout=30).raise_for_status()
wait_for(lambda: hub.balance.get(buyer["id"])["available"] == "50.00", "the deposit to be credited")

order = hub.orders.create(buyer_id=buyer["id"], seller_id=seller["id"], amount="30.00", title="Logo design",
                          milestones=[{"ref": "logo", "title": "Logo", "amount": "30.00"}])  # fmt: skip
hub.orders.reserve(order["id"])
hub.orders.create_escrow(order["id"])
hub.orders.fund_escrow(order["id"])
hub.orders.complete_milestone(order["id"], "logo")
order = hub.orders.release(order["id"], reason="Delivered")
print(order["id"], order["status"], "seller:", hub.balance.get(seller["id"])["available"])
