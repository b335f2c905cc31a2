"""Whose recording: find the patient by chart number through the API, or register them.

The chart number is searched (`GET /api/v1/patients?q=…`) and compared exactly. When no patient
has it, one is registered with what the folder name or the sidecar says (name; kana, when given,
else the name; birth date; sex) in the station's clinic: `--clinic`, the sidecar's `clinic_id`,
or the only clinic the token may see. Without a name, the file waits (the desk registers the
patient, then the agent finds them on its next try).
"""

from __future__ import annotations

import httpx

from chairside.agent.layout import Target
from chairside.client import ChairsideError, Client


class PatientWait(Exception):
    """The patient cannot be found or registered yet; `ja`/`en` say why. `slow`: retry at the slow pace."""

    def __init__(self, ja: str, en: str, *, slow: bool = True) -> None:
        super().__init__(en)
        self.ja = ja
        self.en = en
        self.slow = slow


class PatientResolver:
    def __init__(self, client: Client, clinic_id: str | None, server: str, token: str,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.client = client
        self.clinic_id = clinic_id
        self.server = server.rstrip("/")
        self.token = token
        self.transport = transport
        self._known: dict[tuple[str | None, str], str] = {}

    def forget(self, chart_no: str) -> None:
        for key in [k for k in self._known if k[1] == chart_no]:
            del self._known[key]

    def patient_for(self, target: Target) -> str:
        clinic = target.clinic_id or self.clinic_id
        key = (clinic, target.chart_no)
        if key in self._known:
            return self._known[key]
        found = self._search(target.chart_no, clinic)
        if found is None:
            found = self._register(target, clinic)
        self._known[key] = found
        return found

    def _search(self, chart_no: str, clinic: str | None) -> str | None:
        items = self.client.search_patients(chart_no, limit=200)
        exact = [p for p in items if p["chart_no"] == chart_no and (clinic is None or p["clinic_id"] == clinic)]
        if not exact:
            return None
        if len(exact) > 1:
            ours = [p for p in exact if p.get("merge_with") is None]
            if len({p["clinic_id"] for p in ours}) > 1:
                raise PatientWait(
                    f"カルテ番号 {chart_no} の患者が複数の医院にいます。エージェントに --clinic を指定してください。",
                    f"Chart number {chart_no} exists in several clinics: start the agent with --clinic.")
            exact = ours or exact
        return str(exact[0]["id"])

    def _register(self, target: Target, clinic: str | None) -> str:
        if not target.name:
            raise PatientWait(
                f"カルテ番号 {target.chart_no} の患者が未登録です。受付で登録するか、フォルダ名かサイドカー JSON に"
                "氏名を書いてください。登録されれば自動で送信します。",
                f"No patient has chart number {target.chart_no}: register them at the desk, or give the name in the "
                "folder name or the sidecar JSON. Sending starts by itself once they exist.")
        clinic = clinic or self._only_clinic()
        try:
            created = self.client.create_patient(
                clinic, target.chart_no, target.name, target.kana or target.name,
                birth_date=target.birth_date.isoformat() if target.birth_date else None, sex=target.sex)
        except ChairsideError as e:
            if e.status == 409:  # registered meanwhile (by the desk, or another station): find them
                again = self._search(target.chart_no, clinic)
                if again is not None:
                    return again
            if e.status == 422:
                raise PatientWait(f"患者を登録できませんでした（{e.detail}）。サイドカー JSON を確認してください。",
                                  f"The patient could not be registered: {e.detail}. Check the sidecar JSON.") from e
            raise
        return str(created["id"])

    def _only_clinic(self) -> str:
        with httpx.Client(base_url=self.server, headers={"Authorization": f"Bearer {self.token}"},
                          transport=self.transport, timeout=30.0) as http:
            response = http.get("/api/v1/clinics")
        if response.status_code == 200:
            clinics = response.json()["items"]
            if len(clinics) == 1:
                return str(clinics[0]["id"])
        raise PatientWait(
            "新しい患者を登録する医院が分かりません。エージェントに --clinic（医院 ID）を指定してください。",
            "The clinic to register new patients in is not known: start the agent with --clinic ID.")
