// Every string of the user interface, in Japanese (first) and English, and the formats of dates,
// times and sizes. The choice is kept in localStorage; times are shown in Japan time, as in the clinic.

const LANG_KEY = 'chairside.lang';
const TIME_ZONE = 'Asia/Tokyo';
const listeners = [];

const ja = {
  'common.cancel': 'キャンセル',
  'common.close': '閉じる',
  'common.save': '保存',
  'common.loading': '読み込み中…',
  'lang.switchTo': 'Switch to English',
  'device.androidPhone': 'Android スマートフォン',
  'device.androidTablet': 'Android タブレット',
  'device.windows': 'Windows パソコン',
  'device.browser': 'ブラウザ',

  'signin.title': 'サインイン',
  'signin.login': 'ログイン ID',
  'signin.password': 'パスワード',
  'signin.device': 'この端末の名前',
  'signin.deviceHint': '1 つのアカウントは同時に 1 台の端末で使えます。ほかの端末に表示される名前です（例: 受付 iPad）。',
  'signin.submit': 'サインイン',
  'signin.signedOut': 'サインアウトしました。',
  'inuse.title': 'このアカウントは別の端末で使用中です',
  'inuse.text': '「{device}」で {since} からサインインしています。',
  'inuse.lastSeen': '最後の操作: {when}',
  'inuse.warning': '引き継ぐと、その端末はサインアウトされます。',
  'inuse.takeover': 'この端末に引き継ぐ',
  'inuse.cancel': 'やめる',
  'takenover.title': '別の端末に引き継がれました',
  'takenover.text': 'このアカウントは「{device}」でサインインされたため、この端末はサインアウトしました。',
  'takenover.textUnknown': 'このアカウントは別の端末でサインインされたため、この端末はサインアウトしました。',
  'takenover.again': 'もう一度サインイン',

  'nav.label': 'メインメニュー',
  'nav.skip': '本文へ移動',
  'nav.search': '検索',
  'nav.patient': '患者',
  'nav.import': '取り込み',
  'nav.select': '選択',
  'nav.account': 'その他',
  'nav.backToSearch': '患者検索に戻る',
  'nav.choosePatient': '先に患者を選んでください。',
  'account.title': 'アカウント',
  'account.signedInAs': '{name}（端末: {device}）でサインイン中',
  'account.signOut': 'サインアウト',

  'search.label': '患者を探す',
  'search.placeholder': 'カルテ番号・氏名・ふりがな',
  'search.results': '検索結果（{n} 人）',
  'search.recent': '最近の患者',
  'search.none': '該当する患者はいません。番号や名前の始めの文字を確かめてください。',
  'search.noPatients': '患者はまだ登録されていません。',

  'patient.chart': 'カルテ',
  'patient.placeholder': '左の一覧から患者を選ぶと、写真・動画が日付順に表示されます。',
  'sex.male': '男性',
  'sex.female': '女性',
  'sex.other': 'その他',
  'kind.video': '動画',
  'kind.photo': '写真',
  'filter.bar': '表示の絞り込み',
  'filter.kind': '種類',
  'filter.all': 'すべて',
  'filter.videos': '動画',
  'filter.photos': '写真',
  'filter.clinic': '医院',
  'filter.allClinics': 'すべての医院',
  'filter.tag': 'タグ',
  'filter.allTags': 'すべてのタグ',
  'filter.count': '{n} 件',
  'timeline.empty': '写真・動画はまだありません。「取り込み」から追加できます。',
  'timeline.noMatch': '条件に合う写真・動画はありません。',
  'select.bar': '選択した項目',
  'select.start': '選択',
  'select.done': '選択を終了',
  'select.count': '{n} 件を選択中',
  'select.all': 'すべて選択',
  'select.compare': '比較',
  'select.compareHint': '2〜4 件を選ぶと並べて比較できます',
  'select.download': 'ダウンロード',
  'select.downloading': '{n} 件を ZIP でダウンロードしています…',

  'viewer.actions': '操作',
  'viewer.close': '閉じる (Esc)',
  'viewer.prev': '前へ',
  'viewer.next': '次へ',
  'viewer.download': '元のファイルをダウンロード',
  'viewer.fullscreen': '全画面 (F)',
  'player.controls': '再生操作',
  'player.play': '再生',
  'player.pause': '一時停止',
  'player.playKey': '再生 / 一時停止 (スペース)',
  'player.frameBack': '1 コマ戻る',
  'player.frameBackKey': '1 コマ戻る (,)',
  'player.frameFwd': '1 コマ進む',
  'player.frameFwdKey': '1 コマ進む (.)',
  'player.position': '再生位置 (← → で 5 秒)',
  'player.speed': '再生速度',
  'player.saveFrame': 'この場面を写真として保存',
  'player.frameSaving': 'この場面を写真として保存しています…',
  'photo.zoom': '拡大・縮小',
  'photo.zoomIn': '拡大 (+)',
  'photo.zoomOut': '縮小 (-)',
  'photo.fit': '全体を表示 (0)',
  'photo.hint': 'ピンチ・ホイール・ダブルタップで拡大',

  'draw.start': '描く',
  'draw.tools': '描画ツール',
  'draw.tool.pen': 'ペン',
  'draw.tool.arrow': '矢印',
  'draw.tool.circle': '丸',
  'draw.tool.text': '文字',
  'draw.color.e53935': '赤',
  'draw.color.fdd835': '黄',
  'draw.color.43a047': '緑',
  'draw.color.1e88e5': '青',
  'draw.color.ffffff': '白',
  'draw.color.111111': '黒',
  'draw.width.thin': '細い線',
  'draw.width.thick': '太い線',
  'draw.undo': '1 つ戻す',
  'draw.clear': 'すべて消す',
  'draw.save': '描画を保存',
  'draw.saved': '描画を保存しました。元の写真・動画は変わりません。',
  'draw.textPrompt': '文字を入力して Enter',
  'draw.toggle': '描画の表示 / 非表示',
  'draw.layers': '描画の一覧',
  'draw.layer': '描画',
  'draw.none': 'まだ描画はありません。',
  'draw.goto': 'この場面へ移動',
  'draw.edit': '描き直す',
  'draw.delete': '削除',
  'draw.confirmDelete': 'この描画を削除しますか？（元の写真・動画は残ります）',
  'draw.deleted': '描画を削除しました。',

  'tags.edit': 'タグ',
  'tags.label': 'タグ（読点かカンマで区切る）',
  'tags.hint': 'よく使うタグ:',
  'tags.saved': 'タグを保存しました。',

  'compare.title': '{n} 件を比較',
  'compare.synced': '動画は同時に再生・移動します',

  'import.title': '写真・動画の取り込み',
  'import.button': '取り込み',
  'import.choose': '写真・動画を選ぶ',
  'import.dropHint': 'またはここにファイルをドラッグ（複数可）。通信が切れても続きから送ります。',
  'import.for': '{name} さん（カルテ {chart}）に追加します',
  'import.noPatient': '先に患者を選んでください。',
  'import.notMedia': '写真・動画ではないため取り込めません。',
  'import.queued': '待機中',
  'import.uploading': '送信中 {pct}%（{size}）',
  'import.finishing': '保存しています…',
  'import.retrying': '接続を待っています… {pct}% から再開します',
  'import.done': '完了',
  'import.cancelled': '取り消しました',
  'import.retry': '再試行',
  'import.summary': '{total} 件中 {done} 件完了',

  'quota.near': '動画の保存時間が上限に近づいています: {plan} 時間中 {used} 時間（{percent}%）を使用、残り {left} 時間。',
  'quota.full': '動画の保存時間が上限に達しました（{plan} 時間中 {used} 時間）。新しい動画は保存できません（写真は保存できます）。',
  'quota.forecast': '今のペースでは {day} ごろに上限に達します。',
  'quota.action': '契約の管理者がプランを 100 時間単位で増やせます。',
  'quota.dismiss': '今日は表示しない',

  'error.network': '通信できません。ネットワークを確かめてください。',
  'error.unexpected': '予期しないエラーが起きました。もう一度お試しください。',
  'problem.bad-credentials': 'ログイン ID またはパスワードが違います。',
  'problem.signin-throttled': '間違いが続いたため、しばらくサインインできません。{wait} 秒後にもう一度お試しください。',
  'problem.session-idle': 'しばらく操作がなかったため、サインアウトしました。',
  'problem.signed-out': 'サインアウトしています。もう一度サインインしてください。',
  'problem.unauthenticated': '',
  'problem.account-disabled': 'このアカウントは無効になっています。医院の管理者に連絡してください。',
  'problem.csrf': 'ページが古くなっています。再読み込みしてください。',
  'problem.unsupported-media': 'この形式のファイルは取り込めません（動画は MP4/MOV、写真は JPEG・PNG・HEIC）。',
  'problem.corrupt-media': 'ファイルが壊れているため取り込めません。',
  'problem.video-quota-full': '動画の保存時間が上限に達しているため、動画は保存できません。写真は保存できます。',
  'problem.too-large': 'ファイルが大きすぎます。',
  'problem.storage-full': 'サーバーの空き容量が足りません。管理者に連絡してください。',
  'problem.media-not-found': '写真・動画が見つかりません。削除されたか、見る権限がありません。',
  'problem.patient-not-found': '患者が見つかりません。もう一度検索してください。',
  'problem.annotation-changed': 'この描画は別の端末で変更されました。開き直してから描き直してください。',
  'problem.empty-file': 'ファイルが空です。',
};

const en = {
  'common.cancel': 'Cancel',
  'common.close': 'Close',
  'common.save': 'Save',
  'common.loading': 'Loading…',
  'lang.switchTo': '日本語に切り替える',
  'device.androidPhone': 'Android phone',
  'device.androidTablet': 'Android tablet',
  'device.windows': 'Windows PC',
  'device.browser': 'Browser',

  'signin.title': 'Sign in',
  'signin.login': 'Login',
  'signin.password': 'Password',
  'signin.device': 'Name of this device',
  'signin.deviceHint': 'An account is used on one device at a time. Other devices see this name (e.g. Reception iPad).',
  'signin.submit': 'Sign in',
  'signin.signedOut': 'You are signed out.',
  'inuse.title': 'This account is in use on another device',
  'inuse.text': 'It is signed in on “{device}” since {since}.',
  'inuse.lastSeen': 'Last active: {when}',
  'inuse.warning': 'If you take over, that device is signed out.',
  'inuse.takeover': 'Take over on this device',
  'inuse.cancel': 'Not now',
  'takenover.title': 'Taken over by another device',
  'takenover.text': 'This account was signed in on “{device}”, so this device was signed out.',
  'takenover.textUnknown': 'This account was signed in on another device, so this device was signed out.',
  'takenover.again': 'Sign in again',

  'nav.label': 'Main menu',
  'nav.skip': 'Skip to content',
  'nav.search': 'Search',
  'nav.patient': 'Patient',
  'nav.import': 'Import',
  'nav.select': 'Select',
  'nav.account': 'More',
  'nav.backToSearch': 'Back to patient search',
  'nav.choosePatient': 'Choose a patient first.',
  'account.title': 'Account',
  'account.signedInAs': 'Signed in as {name} (device: {device})',
  'account.signOut': 'Sign out',

  'search.label': 'Find a patient',
  'search.placeholder': 'Chart number, name or kana',
  'search.results': 'Results ({n})',
  'search.recent': 'Recent patients',
  'search.none': 'No patient matches. Check the start of the number or name.',
  'search.noPatients': 'No patients yet.',

  'patient.chart': 'Chart',
  'patient.placeholder': 'Choose a patient on the left to see their photos and videos by date.',
  'sex.male': 'Male',
  'sex.female': 'Female',
  'sex.other': 'Other',
  'kind.video': 'Video',
  'kind.photo': 'Photo',
  'filter.bar': 'Filters',
  'filter.kind': 'Kind',
  'filter.all': 'All',
  'filter.videos': 'Videos',
  'filter.photos': 'Photos',
  'filter.clinic': 'Clinic',
  'filter.allClinics': 'All clinics',
  'filter.tag': 'Tag',
  'filter.allTags': 'All tags',
  'filter.count': '{n} items',
  'timeline.empty': 'No photos or videos yet. Add some with Import.',
  'timeline.noMatch': 'Nothing matches these filters.',
  'select.bar': 'Selected items',
  'select.start': 'Select',
  'select.done': 'Done',
  'select.count': '{n} selected',
  'select.all': 'Select all',
  'select.compare': 'Compare',
  'select.compareHint': 'Choose 2 to 4 items to compare side by side',
  'select.download': 'Download',
  'select.downloading': 'Downloading {n} items as a zip…',

  'viewer.actions': 'Actions',
  'viewer.close': 'Close (Esc)',
  'viewer.prev': 'Previous',
  'viewer.next': 'Next',
  'viewer.download': 'Download the original',
  'viewer.fullscreen': 'Full screen (F)',
  'player.controls': 'Playback',
  'player.play': 'Play',
  'player.pause': 'Pause',
  'player.playKey': 'Play / pause (Space)',
  'player.frameBack': 'One frame back',
  'player.frameBackKey': 'One frame back (,)',
  'player.frameFwd': 'One frame forward',
  'player.frameFwdKey': 'One frame forward (.)',
  'player.position': 'Position (← → move 5 s)',
  'player.speed': 'Speed',
  'player.saveFrame': 'Save this frame as a photo',
  'player.frameSaving': 'Saving this frame as a photo…',
  'photo.zoom': 'Zoom',
  'photo.zoomIn': 'Zoom in (+)',
  'photo.zoomOut': 'Zoom out (-)',
  'photo.fit': 'Fit (0)',
  'photo.hint': 'Pinch, wheel or double tap to zoom',

  'draw.start': 'Draw',
  'draw.tools': 'Drawing tools',
  'draw.tool.pen': 'Pen',
  'draw.tool.arrow': 'Arrow',
  'draw.tool.circle': 'Circle',
  'draw.tool.text': 'Text',
  'draw.color.e53935': 'Red',
  'draw.color.fdd835': 'Yellow',
  'draw.color.43a047': 'Green',
  'draw.color.1e88e5': 'Blue',
  'draw.color.ffffff': 'White',
  'draw.color.111111': 'Black',
  'draw.width.thin': 'Thin line',
  'draw.width.thick': 'Thick line',
  'draw.undo': 'Undo',
  'draw.clear': 'Clear all',
  'draw.save': 'Save drawing',
  'draw.saved': 'Drawing saved. The original is unchanged.',
  'draw.textPrompt': 'Type, then Enter',
  'draw.toggle': 'Show / hide drawings',
  'draw.layers': 'Drawings',
  'draw.layer': 'Drawing',
  'draw.none': 'No drawings yet.',
  'draw.goto': 'Go to this frame',
  'draw.edit': 'Edit',
  'draw.delete': 'Delete',
  'draw.confirmDelete': 'Delete this drawing? (The original stays.)',
  'draw.deleted': 'Drawing deleted.',

  'tags.edit': 'Tags',
  'tags.label': 'Tags (separated by commas)',
  'tags.hint': 'Frequent tags:',
  'tags.saved': 'Tags saved.',

  'compare.title': 'Comparing {n} items',
  'compare.synced': 'Videos play and seek together',

  'import.title': 'Import photos and videos',
  'import.button': 'Import',
  'import.choose': 'Choose photos or videos',
  'import.dropHint': 'Or drag files here (many at once). A dropped connection resumes where it stopped.',
  'import.for': 'Adding to {name} (chart {chart})',
  'import.noPatient': 'Choose a patient first.',
  'import.notMedia': 'Not a photo or video: not imported.',
  'import.queued': 'Waiting',
  'import.uploading': 'Sending {pct}% ({size})',
  'import.finishing': 'Storing…',
  'import.retrying': 'Waiting for the connection… resumes at {pct}%',
  'import.done': 'Done',
  'import.cancelled': 'Cancelled',
  'import.retry': 'Retry',
  'import.summary': '{done} of {total} done',

  'quota.near': 'Video storage is nearly full: {used} of {plan} hours used ({percent}%), {left} hours left.',
  'quota.full': 'Video storage is full ({used} of {plan} hours). New videos cannot be saved (photos can).',
  'quota.forecast': 'At the current pace it fills up around {day}.',
  'quota.action': 'The contract administrator can add hours in steps of 100.',
  'quota.dismiss': 'Hide for today',

  'error.network': 'Cannot reach the server. Check the network.',
  'error.unexpected': 'Something went wrong. Please try again.',
  'problem.bad-credentials': 'The login or the password is wrong.',
  'problem.signin-throttled': 'Too many wrong passwords. Try again in {wait} seconds.',
  'problem.session-idle': 'You were signed out after a period without activity.',
  'problem.signed-out': 'You are signed out. Sign in again.',
  'problem.unauthenticated': '',
  'problem.account-disabled': 'This account is disabled. Ask the clinic\u2019s administrator.',
  'problem.csrf': 'This page is out of date. Reload it.',
  'problem.unsupported-media': 'This kind of file cannot be imported (videos: MP4/MOV; photos: JPEG, PNG, HEIC).',
  'problem.corrupt-media': 'The file is damaged and cannot be imported.',
  'problem.video-quota-full': 'Video storage is full: videos cannot be saved. Photos can.',
  'problem.too-large': 'The file is too large.',
  'problem.storage-full': 'The server is out of space. Tell the administrator.',
  'problem.media-not-found': 'This photo or video was not found (deleted, or not yours to see).',
  'problem.patient-not-found': 'This patient was not found. Search again.',
  'problem.annotation-changed': 'This drawing was changed on another device. Reopen it and draw again.',
  'problem.empty-file': 'The file is empty.',
};

export const DICTIONARY = { ja, en };

export function getLang() {
  const saved = localStorage.getItem(LANG_KEY);
  return saved === 'en' ? 'en' : 'ja';
}

export function applyLang() {
  document.documentElement.lang = getLang();
}

export function setLang(lang) {
  localStorage.setItem(LANG_KEY, lang);
  applyLang();
  for (const fn of listeners) fn(lang);
}

export function onLangChange(fn) { listeners.push(fn); }

/** The string for `key` in the current language, with {name} placeholders filled in. */
export function t(key, params = {}) {
  const text = DICTIONARY[getLang()][key] ?? DICTIONARY.ja[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

const locale = () => (getLang() === 'ja' ? 'ja-JP' : 'en-GB');
const formats = new Map();
function format(options) {
  const key = locale() + JSON.stringify(options);
  if (!formats.has(key)) formats.set(key, new Intl.DateTimeFormat(locale(), { timeZone: TIME_ZONE, ...options }));
  return formats.get(key);
}

const asDate = (value) => (value instanceof Date ? value
  : /^\d{4}-\d{2}-\d{2}$/.test(value) ? new Date(`${value}T12:00:00+09:00`) : new Date(value));

/** The Japan-time calendar day of an instant, as YYYY-MM-DD (for grouping the timeline). */
let dayFormat = null;
export function dayKey(iso) {
  dayFormat ||= new Intl.DateTimeFormat('en-CA', { timeZone: TIME_ZONE, year: 'numeric', month: '2-digit',
    day: '2-digit' });
  const parts = Object.fromEntries(dayFormat.formatToParts(asDate(iso)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}`;
}

/** Build the date formats while the first requests are in flight: the first one costs tens of ms. */
export function warmFormats() {
  const now = new Date();
  dayKey(now);
  fmtDay(now);
  fmtTime(now);
  fmtDateTime(now);
}

export function fmtDay(value) {
  return format({ year: 'numeric', month: 'long', day: 'numeric', weekday: 'short' }).format(asDate(value));
}

export function fmtTime(value) {
  return format({ hour: '2-digit', minute: '2-digit', hour12: false }).format(asDate(value));
}

export function fmtDateTime(value) {
  if (!value) return '';
  return format({ year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hour12: false })
    .format(asDate(value));
}

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** m:ss.cc — precise enough to tell frames apart. */
export function fmtClock(seconds) {
  const value = Number.isFinite(seconds) ? Math.max(0, seconds) : 0;
  const cs = Math.floor(value * 100 + 1e-6);
  const m = Math.floor(cs / 6000);
  const s = Math.floor((cs % 6000) / 100);
  return `${m}:${String(s).padStart(2, '0')}.${String(cs % 100).padStart(2, '0')}`;
}

export function fmtBytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = n;
  let i = 0;
  while (value >= 1000 && i < units.length - 1) { value /= 1000; i += 1; }
  return `${value.toFixed(value < 10 && i ? 1 : 0)} ${units[i]}`;
}

export function fmtBirth(birth) {
  if (!birth) return '';
  const [y, m, d] = birth.split('-').map(Number);
  const today = new Date();
  let age = today.getFullYear() - y;
  if (today.getMonth() + 1 < m || (today.getMonth() + 1 === m && today.getDate() < d)) age -= 1;
  return getLang() === 'ja'
    ? `${y}年${m}月${d}日生（${age}歳）`
    : `born ${format({ year: 'numeric', month: 'short', day: 'numeric' }).format(asDate(birth))} (${age})`;
}
