"""The local stack's DynamoDB applies each request atomically, as DynamoDB does: the gallery's and
the unknown faces' gapless change counters rely on it. moto alone does not (its requests run in
threads): before the stack ran DynamoDB requests one at a time, 8 writers racing conditional
transactions lost 9 of 246 updates on a 3,000-item table, and 1 of 99 on a 1,000-item one (this
test's size, which keeps it to 20 seconds; so it catches the race in some runs, not every run)."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from support.aws import client
from support.stack import StackProcess

WRITERS, ROUNDS = 8, 60


def test_conditional_transactions_never_both_win(tmp_path: Path) -> None:
    with StackProcess(tmp_path / "state", workers=0) as stack:
        db = client(stack.endpoint, "dynamodb")
        db.create_table(TableName="race", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}])
        db.put_item(TableName="race", Item={"k": {"S": "counter"}, "v": {"N": "0"}})
        for start in range(0, 1000, 25):  # a big table: moto's transaction copies it, widening the race
            db.batch_write_item(RequestItems={"race": [
                {"PutRequest": {"Item": {"k": {"S": f"pad{i}"}, "x": {"S": "y" * 100}}}} for i in range(start, start + 25)]})
        wins: list[int] = []

        def writer() -> None:
            mine = client(stack.endpoint, "dynamodb")
            for _ in range(ROUNDS):
                v = int(mine.get_item(TableName="race", Key={"k": {"S": "counter"}}, ConsistentRead=True)["Item"]["v"]["N"])
                try:
                    mine.transact_write_items(TransactItems=[
                        {"Update": {"TableName": "race", "Key": {"k": {"S": "counter"}}, "UpdateExpression": "SET v = :n",
                                    "ConditionExpression": "v = :o",
                                    "ExpressionAttributeValues": {":n": {"N": str(v + 1)}, ":o": {"N": str(v)}}}},
                        {"Put": {"TableName": "race", "Item": {"k": {"S": f"log{v + 1}"}},
                                 "ConditionExpression": "attribute_not_exists(k)"}}])
                    wins.append(v + 1)
                except mine.exceptions.TransactionCanceledException:
                    time.sleep(0.001)

        threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = int(db.get_item(TableName="race", Key={"k": {"S": "counter"}}, ConsistentRead=True)["Item"]["v"]["N"])
        assert sorted(wins) == list(range(1, final + 1)), "every win is one step of the counter, none lost or repeated"
        assert stack.stop() == 0
