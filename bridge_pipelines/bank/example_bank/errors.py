"""Errors the example bank answers with: an HTTP status, a stable code and a message."""

from __future__ import annotations


class BankError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def bad_request(message: str, code: str = "INVALID_REQUEST") -> BankError:
    return BankError(400, code, message)


def not_found(code: str, message: str) -> BankError:
    return BankError(404, code, message)


def conflict(code: str, message: str) -> BankError:
    return BankError(409, code, message)


def unprocessable(code: str, message: str) -> BankError:
    return BankError(422, code, message)
