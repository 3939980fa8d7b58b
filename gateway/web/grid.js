// The demo page's video grid for a room: one tile per member connection (and one for you), each
// with the member's name, a mute indicator and its video, laid out as large as the box allows.
// It only shows what it is told; demo.js follows the Room and tells it.

const MIC_OFF = `<svg viewBox="0 0 24 24" width="14" height="14" aria-hidden="true" fill="none" stroke="currentColor"
  stroke-width="2" stroke-linecap="round"><path d="M9 9v2a3 3 0 0 0 5.1 2.1M15 10V5a3 3 0 0 0-5.9-.8"/>
  <path d="M19 11a7 7 0 0 1-1.2 3.9M5 11a7 7 0 0 0 11 5.7M12 18v3M3 3l18 18"/></svg>`;

/** The gap between tiles, in CSS pixels (as in demo.css). */
const GAP = 8;
/** The shape the layout aims each tile at. */
const ASPECT = 4 / 3;

/**
 * What a tile shows.
 * @typedef {object} TileState
 * @property {string} name the caption
 * @property {MediaStream|null} stream what it plays
 * @property {boolean} video the stream has video to show: it is shown once frames arrive
 * @property {string} overlay the overlay's text while no video is shown
 * @property {boolean} micOff the member announced its microphone muted
 * @property {boolean} [mirror] show the video mirrored (your own camera)
 * @property {boolean} [screen] the video is a shared screen: shown whole
 */

export class Grid {
  /** @type {HTMLElement} */
  #box;
  /** @type {HTMLButtonElement} shown when the browser refuses to play sound without a click */
  #unmute;
  /** @type {Map<string, HTMLElement>} tiles by key: "self" or a member's conn */
  #tiles = new Map();

  /**
   * @param {HTMLElement} box the grid element
   * @param {HTMLButtonElement} unmute the "click to hear them" button
   */
  constructor(box, unmute) {
    this.#box = box;
    this.#unmute = unmute;
    new ResizeObserver(() => this.#layout()).observe(box);
    unmute.addEventListener("click", () => {
      for (const tile of this.#tiles.values()) {
        const video = /** @type {HTMLVideoElement} */ (tile.querySelector("video"));
        if (tile.dataset.key !== "self") video.muted = false;
        video.play().catch(() => {});
      }
      unmute.hidden = true;
    });
  }

  /**
   * Shows or updates the tile of key: "self", or a member's conn.
   * @param {string} key @param {TileState} state
   */
  show(key, state) {
    let tile = this.#tiles.get(key);
    if (!tile) {
      tile = this.#create(key);
      this.#tiles.set(key, tile);
      this.#box.append(tile);
      this.#layout();
    }
    const video = /** @type {HTMLVideoElement} */ (tile.querySelector("video"));
    if (video.srcObject !== state.stream) {
      video.srcObject = state.stream;
      if (state.stream) this.#play(video, key === "self");
    }
    tile.dataset.want = state.video ? (state.screen ? "screen" : "camera") : "none";
    this.#paint(tile);
    tile.dataset.mic = state.micOff ? "off" : "on";
    tile.classList.toggle("mirror", !!state.mirror);
    /** @type {HTMLElement} */ (tile.querySelector(".tile-name")).textContent = state.name;
    /** @type {HTMLElement} */ (tile.querySelector(".tile-avatar")).textContent = [...state.name.replace(/^You \(|\)$/g, "")][0]?.toUpperCase() ?? "";
    /** @type {HTMLElement} */ (tile.querySelector(".tile-text")).textContent = state.overlay;
  }

  /** Drops the tile of key. @param {string} key */
  remove(key) {
    const tile = this.#tiles.get(key);
    if (!tile) return;
    /** @type {HTMLVideoElement} */ (tile.querySelector("video")).srcObject = null;
    tile.remove();
    this.#tiles.delete(key);
    this.#layout();
  }

  /** Drops every tile. */
  clear() {
    for (const key of [...this.#tiles.keys()]) this.remove(key);
    this.#unmute.hidden = true;
  }

  /** @param {string} key */
  #create(key) {
    const tile = document.createElement("figure");
    tile.className = "tile";
    tile.dataset.key = key;
    if (key !== "self") tile.dataset.conn = key;
    tile.innerHTML = `<video autoplay playsinline></video>
      <div class="overlay"><span class="tile-avatar" aria-hidden="true"></span><span class="tile-text"></span></div>
      <figcaption><span class="tile-name"></span><span class="mic-off" title="Microphone muted">${MIC_OFF}<span>muted</span></span></figcaption>`;
    const video = /** @type {HTMLVideoElement} */ (tile.querySelector("video"));
    video.muted = key === "self";
    // A remote track's "muted" flag is not to be trusted (Chrome may leave it set while frames
    // flow, after a renegotiation): the video shows once the element has a picture.
    for (const ev of ["loadeddata", "resize", "emptied"]) video.addEventListener(ev, () => this.#paint(tile));
    return tile;
  }

  /** Shows the tile's video if it is wanted and has a picture, else the overlay. @param {HTMLElement} tile */
  #paint(tile) {
    const video = /** @type {HTMLVideoElement} */ (tile.querySelector("video"));
    const want = tile.dataset.want ?? "none";
    tile.dataset.video = want !== "none" && video.videoWidth > 0 ? want : "none";
  }

  /** @param {HTMLVideoElement} video @param {boolean} self */
  #play(video, self) {
    video.play().catch(() => {
      if (self) return;
      // Autoplay with sound needs a click on this page: play muted and offer to unmute.
      video.muted = true;
      video.play().catch(() => {});
      this.#unmute.hidden = false;
    });
  }

  /** Picks the number of columns that makes the tiles largest in the box. */
  #layout() {
    const n = this.#tiles.size;
    const { width, height } = this.#box.getBoundingClientRect();
    if (!n || !width || !height) return;
    let best = { cols: 1, rows: n, size: -1 };
    for (let cols = 1; cols <= n; cols++) {
      const rows = Math.ceil(n / cols);
      const w = (width - GAP * (cols - 1)) / cols;
      const h = (height - GAP * (rows - 1)) / rows;
      const size = Math.min(w, h * ASPECT);
      if (size > best.size) best = { cols, rows, size };
    }
    this.#box.style.setProperty("--cols", String(best.cols));
    this.#box.style.setProperty("--rows", String(best.rows));
  }
}
