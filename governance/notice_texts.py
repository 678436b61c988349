"""The wording of public camera notices (G0, T3), in Japanese and English.

Only phrases live here; governance/notice.py decides which apply to a camera and fills them in
from the site config. Placeholders are `str.format` fields; every value put in them is escaped by
the caller for the output format.
"""

from __future__ import annotations

from typing import Any

TEXTS: dict[str, dict[str, Any]] = {
    "ja": {
        "title_traffic": "交通流計測カメラ作動中",
        "title": "カメラ作動中",
        "lead": "このカメラは{operator}が設置・運用しています。映像から{objects}を自動で数えています。"
                "個人や車両を特定できる情報は保存しません。",
        "purpose": "利用目的",
        "captured": "取得する情報",
        "video": "映像（解析の前に横{width}ピクセルに縮小します）",
        "masks": "画面のうち{count}か所（画面の約{percent}）は解析の前に黒く塗りつぶし、一切解析しません",
        "no_masks": "解析対象外として塗りつぶす領域は設定されていません",
        "objects": "映像から読み取る内容：{objects}の種類、位置、進行方向",
        "speed": "、速度",
        "colour": "、車両の色",
        "attributes": "、推定年代と性別",
        "discarded": "処理後すぐに消去する情報",
        "frames": "映像：カメラ近くの機器のメモリ上でのみ処理し、保存も送信もしません",
        "colour_crops": "車両の色を判定するための切り出し画像：判定後すぐに消去します",
        "attribute_crops": "年代・性別を推定するための人物の切り出し画像：推定後すぐに消去します"
                           "（顔画像や特徴量は保存しません）",
        "kept": "保存する情報と保存期間",
        "detections": "匿名の検出記録（物体の種類・画面上の位置・一時的な追跡番号。追跡番号は少なくとも毎日"
                      "変わり、個人や車両の特定には使えません）：{period}",
        "aggregates": "集計データ（時間帯・場所・方向ごとの人数・台数など）：{period}",
        "expiry": "保存期間を過ぎたデータは自動的に消去します。",
        "shared": "提供先",
        "partner": "{name}：{tables}",
        "partner_k": "（{k}件未満の件数は非表示）",
        "partner_dp": "（統計的なノイズを加えて提供：差分プライバシー）",
        "no_partners": "第三者への提供はありません。",
        "shared_note": "提供するのは集計データのみで、個人や車両を特定できる情報は含みません。",
        "contact": "問い合わせ先",
        "contact_line": "{operator}　{contact}",
        "requests": "開示・削除・利用停止のご依頼もこちらで受け付けます。",
        "camera_id": "カメラ番号：{camera}",
        "list_sep": "・",
        "and": "・",
        "table_sep": "、",
        "days": "{n}日間",
        "day": "{n}日間",
        "hours": "{n}時間",
        "hour": "{n}時間",
        "classes": {"person": "人", "bicycle": "自転車", "car": "自動車", "motorcycle": "オートバイ",
                    "bus": "バス", "truck": "トラック"},
    },
    "en": {
        "title_traffic": "Traffic-flow measurement camera in operation",
        "title": "Camera in operation",
        "lead": "This camera is operated by {operator}. It automatically counts {objects} in the picture. "
                "Nothing that identifies a person or a vehicle is kept.",
        "purpose": "Purpose",
        "captured": "What is captured",
        "video": "Video, reduced to {width} pixels wide before any analysis",
        "masks": "{count} area(s) of the picture (about {percent} of it) are blacked out before analysis and "
                 "never analysed",
        "no_masks": "No areas are blacked out",
        "objects": "Read from the video: type, position and direction of travel of {objects}",
        "speed": ", speed",
        "colour": ", vehicle colour",
        "attributes": ", estimated age group and gender",
        "discarded": "Processed and immediately discarded",
        "frames": "Video frames: processed only in the memory of the device next to the camera, never "
                  "stored or sent anywhere",
        "colour_crops": "Image crops of vehicles used to name their colour: discarded as soon as the colour "
                        "is named",
        "attribute_crops": "Image crops of people used to estimate age group and gender: discarded as soon "
                           "as the estimate is made (no face images or feature data are kept)",
        "kept": "What is kept, and for how long",
        "detections": "Anonymous detection records (object type, position in the picture and a temporary "
                      "track number that changes at least daily and cannot identify anyone): {period}",
        "aggregates": "Aggregated statistics (counts per time window, place and direction): {period}",
        "expiry": "Data older than this is deleted automatically.",
        "shared": "Who receives what",
        "partner": "{name}: {tables}",
        "partner_k": "; counts below {k} are withheld",
        "partner_dp": "; every count with statistical noise (differential privacy)",
        "no_partners": "No data is given to anyone else.",
        "shared_note": "Only aggregated statistics are shared; they contain nothing that identifies a person "
                       "or a vehicle.",
        "contact": "Contact",
        "contact_line": "{operator}, {contact}",
        "requests": "Requests for disclosure, deletion or to stop using data are also handled here.",
        "camera_id": "Camera: {camera}",
        "list_sep": ", ",
        "and": " and ",
        "table_sep": ", ",
        "days": "{n} days",
        "day": "{n} day",
        "hours": "{n} hours",
        "hour": "{n} hour",
        "classes": {"person": "people", "bicycle": "bicycles", "car": "cars", "motorcycle": "motorcycles",
                    "bus": "buses", "truck": "trucks"},
    },
}

LANGS = tuple(TEXTS)
