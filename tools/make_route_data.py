"""Builds the router's shipped example requests (English and Chinese): train, validation and
held-out test.

Each function has its own request templates per language; the held-out file uses templates
that never appear in training (so the reported accuracy is on new phrasings, not new payloads),
and every payload is shared by all functions (so the router has to read the request, not the
text it is about). Reproducible:

    .venv/bin/python tools/make_route_data.py   # writes src/tunelab/functions/route_data/

These are the requests of the built-in functions, the ones registered with
``route_examples=ROUTE_DATA`` (tunelab.functions); ``main`` refuses to write when the two lists
differ. A function registered elsewhere brings its own CSV of requests instead
(``TaskFunction.route_examples``), and ``tunelab.functions.router.route_dataset`` adds them
to these, so this file never has to list functions it does not ship.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/tunelab/functions/route_data"

PAYLOAD = {
    "en": [
        "the battery died after two days and support never answered",
        "Absolutely love the new camera, photos look amazing at night",
        "Delivery was late but the sofa itself is comfortable",
        "Apple opened a new office in Berlin last Monday, said Tim Cook",
        "The hotel room was dirty and the staff were rude",
        "Shares of Tesla fell 5% after the earnings call in New York",
        "my order #4411 arrived broken, I want a refund",
        "Great value for money, would buy again",
        "The city council of Manchester approved the new tram line on Friday",
        "Angela Merkel met Emmanuel Macron in Paris to discuss energy prices",
        "the app crashes every time I open the settings page",
        "Fast shipping, well packed, works as described",
        "The film drags in the middle but the ending is moving",
        "Microsoft will invest $10 billion in OpenAI over several years",
        "The new phone is too expensive for what it offers",
        "Our flight from London to Tokyo was cancelled without notice",
        "the printer keeps jamming and the ink runs out in a week",
        "Customers praised the quick checkout at the Seattle store",
    ],
    "zh": [
        "电池两天就没电了，客服一直不回复",
        "新相机太好用了，夜景拍得非常清楚",
        "物流有点慢，但是沙发坐着很舒服",
        "华为上周在深圳发布了新款手机，余承东出席了发布会",
        "酒店房间很脏，服务员态度也很差",
        "阿里巴巴的股价在财报公布后下跌了百分之五",
        "我的订单收到时已经坏了，我要退款",
        "性价比很高，还会再买",
        "北京市政府周五批准了新的地铁线路",
        "李明昨天在上海见了王芳，讨论合作的事情",
        "这个软件一打开设置就闪退",
        "发货很快，包装很好，和描述一致",
        "这部电影中间有点拖沓，但结尾很感人",
        "腾讯宣布将在杭州投资建设新的数据中心",
        "新手机太贵了，不值这个价",
        "我们从广州飞往成都的航班被取消了",
        "打印机老是卡纸，墨水一周就用完",
        "顾客称赞南京门店结账很快",
    ],
}
QUESTIONS = {
    "en": [
        "who announced it?",
        "where did it happen?",
        "when did this happen?",
        "what went wrong?",
        "how much money is involved?",
        "which city is mentioned?",
    ],
    "zh": [
        "是谁宣布的？",
        "在哪里发生的？",
        "什么时候发生的？",
        "出了什么问题？",
        "涉及多少钱？",
        "提到了哪个城市？",
    ],
}

# {p}: a payload; {q}: a question (answer only). First TRAIN_N templates train, rest held out.
TEMPLATES = {
    "analyze_sentiment": {
        "en": [
            "what do customers think of this: {p}",
            "is this review positive or negative? {p}",
            "sentiment of: {p}",
            'tell me if this customer is happy: "{p}"',
            "how does the writer feel here: {p}",
            "analyze the sentiment of this comment: {p}",
            "was this feedback good or bad? {p}",
            "check the tone of this review - {p}",
            "is the customer satisfied? {p}",
            "positive or negative: {p}",
            "does this person like the product? {p}",
            "mood of this message: {p}",
            "is this complaint or praise: {p}",
            "figure out whether this reviewer is pleased: {p}",
            # held out
            "what's the sentiment here: {p}",
            "would you say this review is favourable? {p}",
            "gauge how happy the customer is: {p}",
            'is the author angry or pleased? "{p}"',
            "opinion polarity for: {p}",
            "does this feedback sound positive to you: {p}",
        ],
        "zh": [
            "这条评论是正面还是负面：{p}",
            "分析一下这句话的情感：{p}",
            "顾客对这个满意吗？{p}",
            "判断情感倾向：{p}",
            "这位用户的评价是好评还是差评：{p}",
            "看看这段反馈的情绪：“{p}”",
            "用户心情怎么样：{p}",
            "这是表扬还是投诉：{p}",
            "帮我分析评论态度：{p}",
            "这个评价积极吗？{p}",
            "情感分析：{p}",
            "客户喜欢这个产品吗：{p}",
            "这句话语气是正面的吗：{p}",
            "评估这条留言的满意度：{p}",
            # held out
            "这条留言的情感是什么：{p}",
            "买家对商品是否满意？{p}",
            "判断一下这是好评吗：{p}",
            "作者是高兴还是生气：“{p}”",
            "这段话的情绪偏正面还是负面：{p}",
            "帮我看看顾客的态度：{p}",
        ],
    },
    "classify": {
        "en": [
            "what topic is this about: {p}",
            "which category does this ticket belong to? {p}",
            "classify this text: {p}",
            "put this message in the right department: {p}",
            "what kind of news is this: {p}",
            'tag this with a topic: "{p}"',
            "which team should handle this: {p}",
            "label the subject of: {p}",
            "is this about business, sport, tech or politics? {p}",
            "assign a category to this email: {p}",
            "what is this article's section: {p}",
            "route this ticket to a queue: {p}",
            "topic classification: {p}",
            "which product area is this about: {p}",
            # held out
            "file this under the right category: {p}",
            "what subject does this text cover? {p}",
            'sort this into a topic: "{p}"',
            "which bucket does this request go in: {p}",
            "categorise the following: {p}",
            "what genre of story is this: {p}",
        ],
        "zh": [
            "这篇新闻属于哪个类别：{p}",
            "给这段文字分类：{p}",
            "这个工单应该归到哪一类？{p}",
            "这是关于什么主题的：{p}",
            "判断主题类别：“{p}”",
            "这条消息该分给哪个部门：{p}",
            "文本分类：{p}",
            "这属于财经、体育、科技还是政治：{p}",
            "给这封邮件打个类别标签：{p}",
            "这篇文章是哪个栏目的：{p}",
            "把这个问题分到对应的队列：{p}",
            "这段话讲的是哪方面的事：{p}",
            "帮我归类：{p}",
            "主题是什么：{p}",
            # held out
            "这条内容应该放在哪个分类下：{p}",
            "请判断这段文本的类别：{p}",
            "这个投诉属于哪种类型？{p}",
            "这则报道是什么领域的：“{p}”",
            "给下面的话贴个主题：{p}",
            "这个请求该交给哪个团队：{p}",
        ],
    },
    "score": {
        "en": [
            "rate this review from 1 to 5: {p}",
            "give this a score: {p}",
            "how many stars would this customer give? {p}",
            "how urgent is this ticket on a scale of 0 to 10: {p}",
            "score the quality of this feedback: {p}",
            'predict the rating for: "{p}"',
            "what number would you put on this review: {p}",
            "estimate the star rating: {p}",
            "numeric score for: {p}",
            "how severe is this complaint, as a number: {p}",
            "rating prediction: {p}",
            "out of ten, how good is this: {p}",
            "give me a satisfaction score for: {p}",
            "regress a score for this text: {p}",
            # held out
            "how many points out of 5: {p}",
            "put a number on how positive this is: {p}",
            'what rating does this deserve? "{p}"',
            "score this message for priority: {p}",
            "estimate a 1-10 score for: {p}",
            "grade this review numerically: {p}",
        ],
        "zh": [
            "给这条评论打分，1到5分：{p}",
            "这个评价能打几颗星：{p}",
            "打个分数：{p}",
            "这个工单的紧急程度是几分（0到10）：{p}",
            "预测评分：“{p}”",
            "这条反馈值多少分：{p}",
            "估计一下用户会给几星：{p}",
            "评分预测：{p}",
            "满分十分，这个能得几分：{p}",
            "给出一个满意度分数：{p}",
            "用数字表示这条投诉的严重程度：{p}",
            "这段话的评分是多少：{p}",
            "打分：{p}",
            "请给这条留言评个分：{p}",
            # held out
            "五分制的话这条评价几分：{p}",
            "这个评论大概多少星：“{p}”",
            "给这个请求的优先级打分：{p}",
            "估算一个1到10的分数：{p}",
            "用分数衡量顾客满意程度：{p}",
            "这条评价应该得几分？{p}",
        ],
    },
    "extract_entities": {
        "en": [
            "find the people and places in: {p}",
            "list the companies mentioned in this: {p}",
            "extract the named entities: {p}",
            "which organisations and locations appear here? {p}",
            'who and where is mentioned in: "{p}"',
            "pull out all names from: {p}",
            "highlight the person names in: {p}",
            "NER on this sentence: {p}",
            "what cities are named in this text: {p}",
            "get the entities (person, org, location) from: {p}",
            "mark every company name in: {p}",
            "find all proper nouns: {p}",
            "tag people, places and organisations: {p}",
            "which brands are mentioned: {p}",
            # held out
            "spot the names of people and firms in: {p}",
            'identify the locations mentioned: "{p}"',
            "what entities does this contain? {p}",
            "give me every organisation named in: {p}",
            "detect the people in this sentence: {p}",
            "list the place names in: {p}",
        ],
        "zh": [
            "找出这段话中的人名和地名：{p}",
            "提取实体：{p}",
            "这里提到了哪些公司：{p}",
            "抽取人名、地名和机构名：“{p}”",
            "这句话里有哪些地点：{p}",
            "命名实体识别：{p}",
            "把文中的人物都列出来：{p}",
            "识别机构名称：{p}",
            "文中提到了哪些城市：{p}",
            "标出所有专有名词：{p}",
            "找一下这里面的品牌名：{p}",
            "列出提到的组织和人：{p}",
            "这段文字涉及哪些人：{p}",
            "实体抽取：{p}",
            # held out
            "请找出文中出现的地名：{p}",
            "这句话提到了谁：“{p}”",
            "识别一下里面的公司和人物：{p}",
            "把机构名都圈出来：{p}",
            "这段新闻里有哪些实体？{p}",
            "列出文中所有的人名：{p}",
        ],
    },
    "answer": {
        "en": [
            "{q} {p}",
            "based on this text, {q} text: {p}",
            "read this and answer {q} {p}",
            "question: {q} context: {p}",
            'according to the passage "{p}", {q}',
            "{p} -- {q}",
            "from the following, {q} {p}",
            "answer using the text below. {q} {p}",
            "here is a paragraph: {p}. {q}",
            "given that {p}, {q}",
            "in this report ({p}) {q}",
            "use this context to answer {q} context: {p}",
            "I read that {p}. {q}",
            "{q} answer from: {p}",
            # held out
            "look at this: {p}. now tell me, {q}",
            'the article says "{p}". {q}',
            "can you find in the text {q} {p}",
            "{p}. based on that, {q}",
            "passage: {p} question: {q}",
            "from what's written here - {p} - {q}",
        ],
        "zh": [
            "{q}{p}",
            "根据这段话回答：{q}原文：{p}",
            "阅读下面的内容并回答{q}{p}",
            "问题：{q}上下文：{p}",
            "根据“{p}”，{q}",
            "{p}。请问{q}",
            "从下面这段文字里找答案，{q}{p}",
            "用下文回答：{q}{p}",
            "这是一段报道：{p}。{q}",
            "已知{p}，{q}",
            "在这条消息中（{p}），{q}",
            "请根据上下文回答{q}上下文：{p}",
            "我看到{p}。{q}",
            "{q}答案在这里：{p}",
            # held out
            "看看这段：{p}。告诉我{q}",
            "文章说“{p}”。{q}",
            "能从文中找出{q}{p}",
            "{p}。根据这个，{q}",
            "段落：{p} 问题：{q}",
            "根据这里写的内容——{p}——{q}",
        ],
    },
    "generate": {
        "en": [
            "write a short reply to this customer: {p}",
            "draft a polite response to: {p}",
            "generate a product description based on: {p}",
            "write a tweet about: {p}",
            'compose an apology email for: "{p}"',
            "summarise this in one sentence: {p}",
            "rewrite this more politely: {p}",
            "continue this story: {p}",
            "write a headline for: {p}",
            "suggest an answer the support team could send: {p}",
            "make up a slogan inspired by: {p}",
            "paraphrase: {p}",
            "write a thank-you note in response to: {p}",
            "create a follow-up message for: {p}",
            # held out
            "come up with a friendly response to: {p}",
            'turn this into a short marketing blurb: "{p}"',
            "write two sentences replying to: {p}",
            "produce a title for this news: {p}",
            "draft an email answering this complaint: {p}",
            "say this in simpler words: {p}",
        ],
        "zh": [
            "帮我给这位顾客写一段回复：{p}",
            "写一封道歉信：{p}",
            "根据这个写一段商品描述：{p}",
            "写一条微博：“{p}”",
            "用一句话总结：{p}",
            "把这句话改写得更礼貌：{p}",
            "续写：{p}",
            "给这条新闻起个标题：{p}",
            "起草一段客服回复：{p}",
            "根据这个编一句广告语：{p}",
            "换个说法：{p}",
            "写一段感谢的话回应：{p}",
            "生成一条跟进消息：{p}",
            "帮我润色一下：{p}",
            # held out
            "写一段友好的回应：{p}",
            "把这个改成一段营销文案：“{p}”",
            "用两句话回复：{p}",
            "给这段报道拟一个题目：{p}",
            "写封邮件答复这条投诉：{p}",
            "用更简单的话说一遍：{p}",
        ],
    },
}
TRAIN_N = 14  # templates per function and language used for training; the rest are held out

# requests no task function serves: the router learns to say so ("none") instead of forcing
# them onto a function. Each is used once; the first OTHER_TRAIN_N train, the rest held out.
OTHER = {
    "en": [
        "hello there",
        "what's the weather like tomorrow",
        "what time is it",
        "book me a flight to Paris",
        "turn off the lights in the kitchen",
        "how are you today",
        "thanks, bye",
        "play some jazz",
        "set an alarm for 7am",
        "who are you",
        "remind me to call mom at six",
        "order a large pizza",
        "what is 2 plus 2",
        "show my account balance",
        "open the settings",
        "good morning",
        "call a taxi to the station",
        "what day is it",
        "mute the speaker",
        "how far is the moon",
        "is the shop open on sunday",
        "send the report to my boss",
        "good night",
        "what can you do",
        # held out
        "hey, anybody there?",
        "will it rain this afternoon",
        "start a timer for ten minutes",
        "turn the volume up",
        "where is the nearest pharmacy",
        "nice to meet you",
        "schedule a meeting with Anna on friday",
        "how old are you",
    ],
    "zh": [
        "你好",
        "明天天气怎么样",
        "现在几点了",
        "帮我订一张去北京的机票",
        "把厨房的灯关掉",
        "你今天好吗",
        "谢谢，再见",
        "放点音乐",
        "定一个早上七点的闹钟",
        "你是谁",
        "提醒我六点给妈妈打电话",
        "帮我点一份外卖",
        "二加二等于几",
        "查一下我的余额",
        "打开设置",
        "早上好",
        "帮我叫辆车去火车站",
        "今天星期几",
        "把声音关掉",
        "月亮有多远",
        "商店周日开门吗",
        "把报告发给我老板",
        "晚安",
        "你能做什么",
        # held out
        "喂，有人吗",
        "下午会下雨吗",
        "设一个十分钟的计时器",
        "把音量调大",
        "最近的药店在哪里",
        "很高兴认识你",
        "帮我约安娜周五开会",
        "你几岁了",
    ],
}
OTHER_TRAIN_N = 24


def build(seed: int = 0, per_template: int = 3) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    train, test = [], []
    for fn, by_lang in TEMPLATES.items():
        for lang, templates in by_lang.items():
            for i, t in enumerate(templates):
                for p in rng.sample(PAYLOAD[lang], per_template):
                    q = rng.choice(QUESTIONS[lang])
                    row = {"text": t.format(p=p, q=q), "label": fn, "lang": lang}
                    (train if i < TRAIN_N else test).append(row)
    for lang, requests in OTHER.items():
        for i, text in enumerate(requests):
            (train if i < OTHER_TRAIN_N else test).append(
                {"text": text, "label": "none", "lang": lang}
            )
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def check_functions() -> None:
    """Stop if TEMPLATES and the built-in functions that route on these requests drift."""
    from tunelab.functions import ROUTE_DATA, task_functions

    shipped = [f.name for f in task_functions() if f.route_examples == ROUTE_DATA]
    if sorted(shipped) != sorted(TEMPLATES):
        raise SystemExit(
            f"TEMPLATES covers {', '.join(TEMPLATES)} but the functions routed on "
            f"the shipped requests are {', '.join(shipped)}"
        )


def main() -> None:
    check_functions()
    train, test = build()
    n_val = len(train) * 15 // 100  # validation: model selection, same templates as training
    validation, train = train[:n_val], train[n_val:]
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.csv", train), ("validation.csv", validation), ("test.csv", test)):
        with open(OUT / name, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["text", "label", "lang"])
            w.writeheader()
            w.writerows(rows)
        print(f"{OUT / name}: {len(rows)} requests")


if __name__ == "__main__":
    main()
