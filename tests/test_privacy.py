"""Masking of personal data in English and Chinese text (tunelab.privacy), used before anything
is logged (serving) or stored (monitoring)."""

from __future__ import annotations

import pytest

from tunelab.privacy import cn_id_check_ok, cn_id_ok, luhn_ok, mask


@pytest.mark.parametrize(
    "text,expected",
    [
        ("write to a.b+c@mail.example.org now", "write to <email> now"),
        ("邮箱：zhang.san@163.com，谢谢", "邮箱：<email>，谢谢"),
        # mainland mobiles, with and without the country code and separators, next to Chinese
        ("电话13812345678找我", "电话<phone>找我"),
        ("call +86 138 1234 5678 today", "call <phone> today"),
        ("手机：138-1234-5678。", "手机：<phone>。"),
        ("座机 010-12345678 或 (0755)1234567", "座机 <phone> 或 <phone>"),
        # North America and other international numbers
        ("Call (555) 123-4567 or 555.123.4567", "Call <phone> or <phone>"),
        ("ring +1 555 123 4567", "ring <phone>"),
        ("UK office +44 20 7946 0958", "UK office <phone>"),
        # ID numbers: mainland (valid check digit; 15-digit old form), US SSN, Hong Kong
        ("身份证号11010519491231002X已登记", "身份证号<id>已登记"),
        ("id 110105194912310021", "id <id>"),
        ("old id 110105491231002", "old id <id>"),
        ("SSN 078-05-1120 on file", "SSN <id> on file"),
        ("HKID A123456(7)", "HKID <id>"),
        # bank cards: Luhn-valid 13-19 digits, grouped or not
        ("卡号 6222 0212 3456 7894 已冻结", "卡号 <card> 已冻结"),
        ("card 4111111111111111 declined", "card <card> declined"),
        ("visa 4111-1111-1111-1111", "visa <card>"),
    ],
)
def test_personal_data_is_masked(text, expected):
    assert mask(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "on 2024-05-01 at 12:30 the price was ¥1999 or $24.99",
        "order 4111111111111112 shipped",  # 16 digits failing Luhn: an order number
        "tracking 123456789012345678",  # 18 digits, no birth date inside, not Luhn-valid
        "room 1208, 3 guests, 2 nights, 1998 vintage",
        "iPhone 15 Pro 256GB 在2023年9月发布",
        "version 10.4.1-rc2",
    ],
)
def test_what_is_not_personal_data_stays(text):
    assert mask(text) == text


def test_the_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert cn_id_check_ok("11010519491231002X") and not cn_id_check_ok("110105194912310021")
    assert cn_id_ok("110105194912310021")  # a mistyped check character is still an ID
    assert not cn_id_ok("110105194913310021")  # month 13: not a birth date
