"""The verdict of a line check: the rules and figures of docs/netcheck.md, pure (figures in, sentences out).

Does the line carry the clinic's recordings? N chairs × H hours a day of 15 Mbit/s video must go up within
the night window, using at most 1/HEADROOM of the measured upload; a viewer must be able to play a
recording from the cloud as it streams; the line must not drop out. When it does not, say
what to change: wired LAN instead of Wi-Fi, business Wi-Fi, a faster plan; and in every case, the relay's
bandwidth schedule that keeps the clinic's daytime traffic responsive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

VIDEO_MBPS = 15.0  # H.264 recordings (SPEC §1)
HEADROOM = 1.5  # the night's uploads may use at most 2/3 of the measured upload
MIN_DOWNLOAD_MBPS = VIDEO_MBPS  # one recording from the cloud played as it streams
MAX_RETRANSMIT_PERCENT = 2.0  # more: said in the advice (the line or the Wi-Fi loses packets)
WIFI_SUSPECT_RETRANSMIT_PERCENT = MAX_RETRANSMIT_PERCENT
WIFI_SUSPECT_JITTER_MS = 10.0
MAX_DROPOUT_S = 3.0  # a dropout this long or longer: unstable
MAX_PING_LOSS_PERCENT = 2.0
BUFFERBLOAT_MS = 100.0  # round trip under load minus idle: above this, the day needs a cap
HIGH_RTT_MS = 100.0
DAY_CAP_SHARE = 0.3  # relay's daytime cap: this share of the measured upload (leaves the rest to the clinic)


@dataclass(frozen=True)
class Need:
    chairs: int = 2
    hours_per_day: float = 2.0  # recorded hours per chair per day
    night_hours: float = 10.0  # the window the relay uploads in (21:00-07:00 by default)

    @property
    def daily_gb(self) -> float:
        return self.chairs * self.hours_per_day * 3600 * VIDEO_MBPS / 8 / 1000

    @property
    def upload_mbps(self) -> float:
        """The upload the line must measure: the day's video over the night window, times the headroom."""
        return self.chairs * self.hours_per_day * VIDEO_MBPS / self.night_hours * HEADROOM


@dataclass(frozen=True)
class Figures:
    upload_mbps: float
    download_mbps: float
    rtt_ms: float | None  # the line's own round trip: the least of the idle ones
    jitter_ms: float | None
    retransmit_percent: float | None
    loaded_rtt_ms: float | None  # the worse of upload and download under load
    longest_dropout_s: float
    ping_loss_percent: float
    on_wifi: bool | None = None
    rtt_median_ms: float | None = None  # the median idle round trip (what requests pay, the machine's noise too)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    stable: bool
    required_upload_mbps: float
    reasons: list[str] = field(default_factory=list)  # why not ok (ja / en), empty when ok
    advice: list[str] = field(default_factory=list)  # what to do (ja / en)

    @property
    def text_ja(self) -> str:
        return "この回線で利用できます。" if self.ok else "この回線のままでは利用条件を満たしません。"

    @property
    def text_en(self) -> str:
        return "This line qualifies." if self.ok else "This line does not qualify as it is."


def day_cap_mbps(upload_mbps: float) -> int:
    return max(1, math.floor(upload_mbps * DAY_CAP_SHARE))


def judge(f: Figures, need: Need) -> Verdict:
    required = need.upload_mbps
    reasons: list[str] = []
    advice: list[str] = []
    stable = f.longest_dropout_s < MAX_DROPOUT_S and f.ping_loss_percent <= MAX_PING_LOSS_PERCENT
    lossy = f.retransmit_percent is not None and f.retransmit_percent > MAX_RETRANSMIT_PERCENT
    upload_short = f.upload_mbps < required
    download_short = f.download_mbps < MIN_DOWNLOAD_MBPS
    wifi_signs = bool(f.on_wifi) or (f.retransmit_percent or 0) > WIFI_SUSPECT_RETRANSMIT_PERCENT or (
        (f.jitter_ms or 0) > WIFI_SUSPECT_JITTER_MS)

    if upload_short:
        reasons.append(
            f"上り速度 {f.upload_mbps:.1f} Mbps は必要な {required:.1f} Mbps に足りません（{need.chairs} 台 × "
            f"1 日 {need.hours_per_day:g} 時間の録画 {need.daily_gb:.0f} GB を夜間 {need.night_hours:g} 時間で、"
            f"余裕 {HEADROOM:g} 倍）。 / The upload of {f.upload_mbps:.1f} Mbit/s is below the "
            f"{required:.1f} Mbit/s needed ({need.chairs} chairs × {need.hours_per_day:g} h a day of recordings, "
            f"{need.daily_gb:.0f} GB, uploaded within {need.night_hours:g} night hours with {HEADROOM:g}× headroom).")
    if download_short:
        reasons.append(
            f"下り速度 {f.download_mbps:.1f} Mbps では、クラウドの動画を止まらずに再生できません"
            f"（{MIN_DOWNLOAD_MBPS:g} Mbps 以上が必要）。 / The download of {f.download_mbps:.1f} Mbit/s cannot "
            f"play a recording from the cloud without pauses ({MIN_DOWNLOAD_MBPS:g} Mbit/s or more is needed).")
    if not stable:
        reasons.append(
            f"回線が不安定です（最長 {f.longest_dropout_s:.0f} 秒の途切れ、応答なし {f.ping_loss_percent:.1f}%）。"
            f" / The line is unstable (it dropped out for up to {f.longest_dropout_s:.0f} s; "
            f"{f.ping_loss_percent:.1f}% of round trips got no answer).")
    if lossy:  # advice, not a reason: at full rate TCP drops its own packets at the bottleneck (docs/netcheck.md)
        advice.append(
            f"送ったデータの {f.retransmit_percent:.1f}% が再送されました。無線 LAN や配線の不調でも増えるので、"
            f"上りが足りないときはまずこれを疑ってください。 / {f.retransmit_percent:.1f}% of what was sent had to be "
            "sent again; Wi-Fi and bad cabling raise this, so suspect them first when the upload falls short.")
    ok = not reasons

    if wifi_signs:
        advice.append("このパソコンが無線 LAN（Wi-Fi）でつながっている場合は、中継機（リレー）を有線 LAN でルーターに"
                      "つないでください。 / If this computer is on Wi-Fi, connect the relay box to the router with a "
                      "LAN cable instead.")
    if (not stable or lossy) and wifi_signs:
        advice.append("無線が必要な場所には、家庭用ではなく業務用の無線 LAN（アクセスポイント）を入れてください。"
                      " / Where wireless is needed, install business-grade Wi-Fi access points, not home routers.")
    if not stable:
        advice.append("ルーターと光回線終端装置（ONU）の電源・配線を確かめ、途切れが続く場合は回線事業者に相談してください。"
                      " / Check the power and cables of the router and the fibre terminal (ONU); if the dropouts go "
                      "on, ask the line's provider.")
    if upload_short or download_short:
        if not lossy and stable:
            plan = math.ceil(round(required, 1))
            advice.append(f"回線の契約を速いもの（上り {plan} Mbps 以上、業務用光回線など）に変えてください。"
                          f" / Change to a faster plan (at least {plan} Mbit/s upload, e.g. a business fibre line).")
        if upload_short and f.upload_mbps > 0:
            chairs_fit = int(f.upload_mbps / HEADROOM * need.night_hours / (need.hours_per_day * VIDEO_MBPS))
            advice.append(f"今の上り速度で夜間に送れる録画は、"
                          f"{need.hours_per_day:g} 時間/日 の場合 {chairs_fit} 台分です。"
                          f" / At today's upload, the night carries the recordings of {chairs_fit} chairs at "
                          f"{need.hours_per_day:g} h a day.")
    if f.upload_mbps > 0:
        cap = day_cap_mbps(f.upload_mbps)
        advice.append(f"中継機の送信帯域を診療時間は {cap} Mbps に制限し、夜間は無制限にしてください（設定 "
                      f"CHAIRSIDE_RELAY_BANDWIDTH='mon-sat 08:00-20:00={cap}M, *=unlimited'）。 / Cap the relay's "
                      f"upload at {cap} Mbit/s during opening hours and leave the night unlimited (setting "
                      f"CHAIRSIDE_RELAY_BANDWIDTH='mon-sat 08:00-20:00={cap}M, *=unlimited').")
    idle = f.rtt_median_ms if f.rtt_median_ms is not None else f.rtt_ms
    if f.loaded_rtt_ms is not None and idle is not None and f.loaded_rtt_ms - idle > BUFFERBLOAT_MS:
        advice.append(f"送受信中に応答が {f.loaded_rtt_ms - idle:.0f} ms 遅くなります（バッファーブロート）。昼間の"
                      "帯域制限は必ず設定してください。 / Round trips grow by "
                      f"{f.loaded_rtt_ms - idle:.0f} ms while the line is busy (bufferbloat): keep the daytime "
                      "cap above in place.")
    if f.rtt_ms is not None and f.rtt_ms > HIGH_RTT_MS:
        advice.append(f"クラウドまでの往復時間 {f.rtt_ms:.0f} ms は長めです。画面の反応は中継機が保ちますが、"
                      f"回線事業者に経路を確認してください。 / The round trip to the cloud ({f.rtt_ms:.0f} ms) is "
                      "long; the relay keeps the screens responsive, but ask the provider about the route.")
    return Verdict(ok, stable, required, reasons, advice)
