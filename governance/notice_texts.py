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
                    "bus": "バス", "truck": "トラック", "traffic light": "信号機", "stop sign": "一時停止標識",
                    "fire hydrant": "消火栓", "parking meter": "パーキングメーター", "bench": "ベンチ"},
        # a vehicle-mounted camera (guidebook case 4): the sticker on the vehicle
        "mobile_title": "車載カメラ作動中",
        "mobile_lead": "この車両は{operator}の道路状況調査のため、走行中に前方を撮影しています。映像は車内の機器で"
                       "処理し、すぐに消去します。人の顔やナンバープレートを読み取ることはなく、人は人数としてのみ"
                       "数えます。",
        "mobile_objects": "映像から読み取る内容：{furniture}などの道路附属物、前方の車両の台数と距離の目安、"
                          "人の人数（人の動きは追跡しません）",
        "mobile_position": "車両の位置：一辺約{edge}メートルの地図上の区画（H3 解像度{res}）としてのみ記録し、"
                           "緯度・経度は車外に出しません。走行（トリップ）ごとの番号は無作為で、毎日変わります",
        "mobile_zones": "記録しない場所",
        "mobile_zone_items": "登録された{count}か所（車庫・乗務員の自宅など）から半径{radius}メートル以内",
        "mobile_trip_ends": "走行の出発地と到着地から{radius}メートル以内（到着地は着いてから判断するため、"
                            "その手前の記録は送信を保留し、到着後に消去します）",
        "mobile_no_zones": "登録された場所はありません",
        "mobile_aggregates": "集計データ（地図上の区画・進行方向・時間帯ごとの通過した走行数、速度、渋滞度、"
                             "前方車両数、道路附属物、人数）：{period}",
        "mobile_detections": "匿名の検出記録（物体の種類・画面上の位置、車両の地図区画・方角・速度・走行番号）："
                             "{period}",
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
                    "bus": "buses", "truck": "trucks", "traffic light": "traffic lights", "stop sign": "stop signs",
                    "fire hydrant": "fire hydrants", "parking meter": "parking meters", "bench": "benches"},
        "mobile_title": "In-vehicle camera in operation",
        "mobile_lead": "This vehicle films the road ahead while driving, for {operator}'s survey of road conditions. "
                       "The video is processed by a device in the vehicle and discarded at once. Faces and number "
                       "plates are never read, and people are only counted.",
        "mobile_objects": "Read from the video: road furniture such as {furniture}, how many vehicles are ahead and "
                          "roughly how far, and how many people are in view (people are never followed)",
        "mobile_position": "Where the vehicle is: recorded only as a map cell about {edge} m across a side (H3 "
                           "resolution {res}), never as coordinates; each trip gets a random number that changes "
                           "every day",
        "mobile_zones": "Where nothing is recorded",
        "mobile_zone_items": "Within {radius} m of {count} registered place(s) (depot, drivers' homes)",
        "mobile_trip_ends": "Within {radius} m of where a trip starts or ends (the end is only known on arrival, so "
                            "records near it are held back in the vehicle and deleted when the trip ends)",
        "mobile_no_zones": "No places are registered",
        "mobile_aggregates": "Aggregated statistics (per map cell, direction and time window: trips that passed, "
                             "speed, congestion level, vehicles ahead, road furniture, people): {period}",
        "mobile_detections": "Anonymous detection records (object type and position in the picture; the vehicle's "
                             "map cell, direction, speed and trip number): {period}",
    },
}

LANGS = tuple(TEXTS)
