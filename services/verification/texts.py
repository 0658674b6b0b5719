"""Customer-facing wording of the verification service, in zh-CN (the default) and en: the problems
it answers a customer (`problem.<code>`), filled with the problem's fields."""

from __future__ import annotations

from shared.i18n import Catalogue

TEXTS = Catalogue(
    {
        "problem.wrong-code": {
            "zh-CN": "验证码错误，还可尝试 {attempts_remaining} 次。",
            "en": "That code is not right. You have {attempts_remaining} tries left.",
        },
        "problem.code-expired": {
            "zh-CN": "验证码已过期，请重新获取。",
            "en": "This code has expired. Ask for a new one.",
        },
        "problem.verification-locked": {
            "zh-CN": "错误次数过多，本次验证已锁定。如需继续，请重新发起。",
            "en": "Too many wrong attempts, so this check is locked. Start again if you still want to go on.",
        },
        "problem.otp-not-expected": {
            "zh-CN": "当前无需输入短信验证码。",
            "en": "No SMS code is needed right now.",
        },
        "problem.biometric-not-expected": {
            "zh-CN": "当前无需进行设备验证。",
            "en": "No device check is needed right now.",
        },
        "problem.too-many-codes": {
            "zh-CN": "获取验证码太频繁，请 {retry_after} 秒后再试。",
            "en": "You asked for codes too often. Try again in {retry_after} seconds.",
        },
        "problem.verification-verified": {
            "zh-CN": "本次验证已通过，无需重复操作。",
            "en": "This check is already done.",
        },
        "problem.verification-failed": {
            "zh-CN": "本次验证未通过，已结束。",
            "en": "This check failed and has ended.",
        },
        "problem.verification-voided": {
            "zh-CN": "申请已取消或已关闭，本次验证已失效。",
            "en": "The request was cancelled or closed, so this check no longer applies.",
        },
        "problem.verification-expired": {
            "zh-CN": "验证已超时，请重新发起。",
            "en": "This check has timed out. Start again.",
        },
        "problem.challenge-invalid": {
            "zh-CN": "验证已失效，请重新发起设备验证。",
            "en": "This check has lapsed. Start the device check again.",
        },
        "problem.device-unknown": {
            "zh-CN": "该设备未在您的账户中登记。",
            "en": "This device is not registered to your account.",
        },
        "problem.device-not-active": {
            "zh-CN": "该设备尚未启用或已被移除，请使用其他设备。",
            "en": "This device is not active yet, or it was removed. Use another device.",
        },
        "problem.device-newer-than-request": {
            "zh-CN": "该设备是在提交申请后添加的，请使用之前已登记的设备或发起申请的设备。",
            "en": "This device was added after you made the request. Use a device you had before, or the one you made the request from.",
        },
        "problem.signature-invalid": {
            "zh-CN": "设备验证未通过，请重试。",
            "en": "The device check did not match. Try again.",
        },
        "problem.counter-not-increased": {
            "zh-CN": "设备验证异常，已被拒绝。如非本人操作，请立即联系客服。",
            "en": "The device check looked unusual and was refused. If this was not you, contact us at once.",
        },
        "problem.invalid-public-key": {
            "zh-CN": "设备信息无效，请更新应用后重试。",
            "en": "The device details are not valid. Update the app and try again.",
        },
        "problem.device-enrolled": {
            "zh-CN": "该设备已登记，无需重复添加。",
            "en": "This device is already registered.",
        },
    }
)
