"""What the managers' page says, in the manager's language."""

from __future__ import annotations

from typing import Any

Text = dict[str, Any]

TEXT: dict[str, Text] = {
    "zh-CN": {
        "title": "不满意客户跟进",
        "fresh": "数据更新于",
        "other_language": "English",
        "active": "待处理",
        "closed": "已结案",
        "none": "暂无",
        "escalated": "已升级",
        "score": "评分",
        "occasion": "来源",
        "rated_on": "评价渠道",
        "opened": "开案",
        "sla": "距首次联系时限",
        "care_given": "已给予的关怀",
        "history": "处理记录",
        "not_applied": "未生效（案例状态已变）",
        "note": "备注（例如：已致电，已退款）",
        "back": "返回列表",
        "sign_out": "退出",
        "status": {
            "open": "待联系",
            "contacted": "已联系",
            "resolved": "已解决",
            "recovered": "客户已满意",
            "unresolved": "二次回访仍不满意",
        },
        "do": {"contacted": "标记为已联系", "resolved": "标记为已解决"},
        "messages": {
            "link_expired": "登录链接已过期，请使用每日邮件中的新链接",
            "link_invalid": "登录链接无效",
            "sign_in": "请使用您的个人链接登录",
            "no_board": "您的门店暂无数据",
            "not_found": "找不到该案例",
            "refused": "请求被拒绝，请从页面重新提交",
            "signed_out": "您已退出",
        },
    },
    "en": {
        "title": "Dissatisfied customers",
        "fresh": "updated",
        "other_language": "中文",
        "active": "To do",
        "closed": "Closed",
        "none": "None",
        "escalated": "escalated",
        "score": "Score",
        "occasion": "From",
        "rated_on": "rated by",
        "opened": "Opened",
        "sla": "Time left to first contact",
        "care_given": "Care already given",
        "history": "History",
        "not_applied": "not applied (the case had moved on)",
        "note": "Note (what you did: called, refunded...)",
        "back": "Back to the list",
        "sign_out": "Sign out",
        "status": {
            "open": "to contact",
            "contacted": "contacted",
            "resolved": "resolved",
            "recovered": "recovered",
            "unresolved": "still unhappy after the second round",
        },
        "do": {"contacted": "Mark contacted", "resolved": "Mark resolved"},
        "messages": {
            "link_expired": "This sign-in link has expired: use the new one in your daily email",
            "link_invalid": "This sign-in link is not valid",
            "sign_in": "Sign in with your personal link",
            "no_board": "Nothing published for your store yet",
            "not_found": "No such case",
            "refused": "Refused: send the form from the page again",
            "signed_out": "You are signed out",
        },
    },
}
