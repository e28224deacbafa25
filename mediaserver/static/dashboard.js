// The operator dashboard: polls /dashboard/streams.json, plays a channel with hls.js,
// and manages channels through the control API with a token kept in sessionStorage only.
// Everything from the server is put on the page as text (never as HTML).
"use strict";

(() => {
  const POLL_MS = 2000;
  const RETRY_MS = 5000;
  const THUMB_MS = 5000;
  const TOKEN_KEY = "mediaserver.apiToken";
  // The least a browser must decode to play a codec at all (Baseline H.264, Main HEVC,
  // AAC-LC): if it refuses these it refuses every stream of that codec.
  const PROBE_TYPES = {
    h264: ['video/mp4; codecs="avc1.42E01E"'],
    hevc: ['video/mp4; codecs="hvc1.1.6.L93.B0"', 'video/mp4; codecs="hev1.1.6.L93.B0"'],
    aac: ['audio/mp4; codecs="mp4a.40.2"'],
  };
  // hls.js errors that no retry can mend: the browser has no decoder for the stream.
  const CODEC_ERRORS = new Set(["manifestIncompatibleCodecsError",
    "bufferIncompatibleCodecsError", "bufferAddCodecError"]);
  // Fatal media errors hls.js may try to recover from before the player gives up.
  const MAX_MEDIA_RECOVERIES = 2;
  // Fastest playback rate hls.js may use to get back to its low-latency target.
  const LL_CATCH_UP_RATE = 1.5;

  const $ = (id) => document.getElementById(id);
  const state = {
    apiPrefix: "/api/v1",
    cards: new Map(), // channel -> {root, refs, thumbAt}
    streams: [],
    playing: null,
    waiting: false, // selected, but its playlist has no segment yet
    hls: null,
    stopped: null, // why playback was given up (shown once), or null
    // Read by the browser tests: every hls.js error event, fatal or not.
    hlsErrors: [],
  };
  window.dashboardState = state;

  // ---- small helpers ------------------------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function bitrate(bps) {
    if (bps == null) return "–";
    if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mb/s`;
    return `${Math.round(bps / 1e3)} kb/s`;
  }

  function duration(seconds) {
    if (seconds == null) return "–";
    const s = Math.max(0, Math.floor(seconds));
    const hh = Math.floor(s / 3600);
    const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    return `${hh}:${mm}:${ss}`;
  }

  function audio(stream) {
    if (!stream.audio_codec) return "none";
    const rate = stream.sample_rate ? ` ${stream.sample_rate / 1000} kHz` : "";
    const layout = { 1: " mono", 2: " stereo" }[stream.audio_channels] || "";
    return `${stream.audio_codec}${rate}${layout}`;
  }

  function video(stream) {
    if (!stream.video_codec) return stream.state === "live" ? "none" : "–";
    const size = stream.width && stream.height ? `${stream.width}×${stream.height}` : "?";
    return `${size} ${stream.video_codec}`;
  }

  // Whether this browser can decode the stream's codecs, as far as MediaSource says:
  // null if it can (or cannot tell), else a sentence saying what it cannot play.
  function unplayable(stream) {
    const MS = window.ManagedMediaSource || window.MediaSource;
    if (!MS || !MS.isTypeSupported) return null;
    const missing = [];
    for (const [kind, codec] of [["video", stream.video_codec], ["audio", stream.audio_codec]]) {
      const types = codec && PROBE_TYPES[codec];
      if (types && !types.some((t) => MS.isTypeSupported(t))) {
        missing.push(`${codec.toUpperCase()} ${kind}`);
      }
    }
    return missing.length ? `This browser cannot play ${missing.join(" or ")}.` : null;
  }

  function notice(text) {
    const node = $("notice");
    node.textContent = text || "";
    node.hidden = !text;
  }

  // ---- live channel cards -------------------------------------------------------------

  function buildCard(name) {
    const refs = {
      badge: el("span", { class: "badge" }),
      img: el("img", { alt: `latest picture of ${name}`, hidden: "" }),
      placeholder: el("span", { class: "placeholder", text: "no picture yet" }),
      playable: el("p", { class: "unplayable", hidden: "" }),
      viewers: el("span", { class: "muted" }),
      facts: el("dl", { class: "facts" }),
      health: el("div"),
      elsewhere: el("p", { class: "elsewhere", hidden: "" }),
      actions: el("div", { class: "actions", hidden: "" }),
    };
    refs.thumb = el("div", { class: "thumb" }, refs.img, refs.placeholder, refs.badge);
    refs.img.addEventListener("load", () => {
      refs.img.hidden = false;
      refs.placeholder.hidden = true;
    });
    refs.actions.append(
      el("button", { type: "button", text: "Rotate key", onclick: (e) => {
        e.stopPropagation();
        rotate(name);
      } }),
      el("button", { type: "button", class: "danger", text: "Kick", onclick: (e) => {
        e.stopPropagation();
        kick(name);
      } }),
    );
    const root = el("article", { class: "card", tabindex: "0", "data-channel": name,
      role: "button", "aria-label": `play ${name}` },
      refs.thumb,
      el("div", { class: "card-body" },
        el("div", { class: "card-title" }, el("h3", { text: name }), refs.viewers),
        refs.facts, refs.playable, refs.elsewhere, refs.health, refs.actions));
    root.addEventListener("click", () => play(name));
    root.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        play(name);
      }
    });
    return { root, refs, thumbAt: 0, audioOnly: false };
  }

  function fillCard(card, stream, skew) {
    const { refs } = card;
    const live = stream.state === "live";
    refs.badge.textContent = live ? "LIVE" : "RECONNECTING";
    refs.badge.className = live ? "badge" : "badge reconnecting";
    const n = stream.viewers || 0;
    refs.viewers.textContent = `${n} viewer${n === 1 ? "" : "s"}`;
    const uptime = live ? Date.now() / 1000 - skew - stream.started_at : null;
    const facts = [
      ["Video", video(stream)],
      ["Frame rate", stream.fps != null ? `${stream.fps.toFixed(1)} fps` : "–"],
      ["Bitrate", live ? bitrate(stream.bitrate_bps) : "–"],
      ["Keyframes", stream.keyframe_interval != null
        ? `every ${stream.keyframe_interval.toFixed(2)} s` : "–"],
      ["Audio", live ? audio(stream) : "–"],
      ["Uptime", duration(uptime)],
    ];
    // In a cluster: which node holds the publisher (its viewers count is this node's).
    if (stream.node != null) facts.push(["Node", stream.here ? "this node" : stream.node]);
    refs.facts.replaceChildren(...facts.flatMap(([k, v]) => [
      el("dt", { text: k }), el("dd", { text: v, "data-fact": k.toLowerCase() }),
    ]));
    const warnings = stream.warnings || [];
    refs.health.replaceChildren(warnings.length
      ? el("ul", { class: "warnings" }, ...warnings.map((w) => el("li", { text: w })))
      : el("p", { class: "healthy", text: "healthy" }));
    refs.actions.hidden = !token();
    card.root.classList.toggle("selected", state.playing === stream.name);
    const cannot = live ? unplayable(stream) : null;
    refs.playable.textContent = cannot || "";
    refs.playable.hidden = !cannot;
    // Held by a node that this one redirects to: the page cannot play or show it here.
    refs.elsewhere.hidden = !stream.node_url;
    if (stream.node_url) {
      refs.elsewhere.replaceChildren("Plays from the node that holds it: ",
        el("a", { href: stream.node_url, text: "open its dashboard",
          onclick: (e) => e.stopPropagation() }));
    }
    // An audio-only channel has no picture: the thumbnail would only ever be a 404. A
    // reconnecting card carries no codecs, so it keeps what the live one said.
    if (live) card.audioOnly = !stream.video_codec;
    refs.thumb.classList.toggle("audio-only", card.audioOnly);
    if (card.audioOnly) {
      refs.img.hidden = true;
      refs.img.removeAttribute("src");
      refs.placeholder.hidden = false;
      refs.placeholder.textContent = "audio only";
      return;
    }
    if (!stream.thumbnail_url) {
      refs.img.hidden = true;
      refs.placeholder.hidden = false;
      refs.placeholder.textContent = "picture on its node";
      return;
    }
    if (refs.img.hidden) refs.placeholder.textContent = "no picture yet";
    const now = Date.now();
    if (now - card.thumbAt >= THUMB_MS) {
      card.thumbAt = now;
      refreshThumbnail(refs, stream.thumbnail_url);
    }
  }

  function refreshThumbnail(refs, url) {
    // Load off-screen first, so a failed or slow fetch never blanks the old picture.
    const next = new Image();
    next.onload = () => { refs.img.src = next.src; };
    next.src = `${url}?t=${Date.now()}`;
  }

  function render(body) {
    state.apiPrefix = body.api_prefix || state.apiPrefix;
    state.streams = body.streams;
    const skew = Date.now() / 1000 - body.server_time;
    const seen = new Set();
    const grid = $("streams");
    for (const stream of body.streams) {
      seen.add(stream.name);
      let card = state.cards.get(stream.name);
      if (!card) {
        card = buildCard(stream.name);
        state.cards.set(stream.name, card);
      }
      fillCard(card, stream, skew);
      grid.append(card.root); // keeps the server's (alphabetical) order
    }
    for (const [name, card] of state.cards) {
      if (!seen.has(name)) {
        card.root.remove();
        state.cards.delete(name);
      }
    }
    $("empty").hidden = body.streams.length > 0;
    const live = body.streams.filter((s) => s.state === "live").length;
    $("summary").textContent =
      `${live} live · updated ${new Date().toLocaleTimeString()}`;
    if (!body.player_available) {
      notice("hls.js is not installed on this server (run `make vendor`): playback is off.");
    }
    if (state.playing) updatePlayerState();
  }

  async function poll() {
    let delay = POLL_MS;
    try {
      const res = await fetch("/dashboard/streams.json", { cache: "no-store" });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      render(await res.json());
      if (token()) await loadChannels();
    } catch (err) {
      $("summary").textContent = `server unreachable (${err.message}), retrying…`;
      delay = RETRY_MS;
    }
    setTimeout(poll, delay);
  }

  // ---- player -------------------------------------------------------------------------

  function stopPlayer() {
    if (state.hls) {
      state.hls.destroy();
      state.hls = null;
    }
    const videoEl = $("player");
    videoEl.removeAttribute("src");
    videoEl.load();
    state.playing = null;
    state.waiting = false;
    state.stopped = null;
  }

  // Playback cannot work in this browser: say why once and stop asking the server.
  function giveUp(text) {
    if (state.hls) {
      state.hls.destroy();
      state.hls = null;
    }
    state.stopped = text;
    playerError(text);
    updatePlayerState();
  }

  function playerError(text) {
    const node = $("player-error");
    node.textContent = text || "";
    node.hidden = !text;
  }

  function updatePlayerState() {
    const stream = state.streams.find((s) => s.name === state.playing);
    if (state.waiting && stream && stream.playlist_ready !== false) {
      startPlayback(stream); // the first segment arrived since the click
      return;
    }
    const live = stream && stream.ll_playback_url ? "live · low latency" : "live";
    $("player-state").textContent = !stream ? "stream ended"
      : state.stopped ? "not playable here"
        : state.waiting ? "waiting for the first segment…"
        : stream.state === "live" ? live : "publisher reconnecting";
  }

  function play(name) {
    const stream = state.streams.find((s) => s.name === name);
    if (!stream || !stream.playback_url) return; // held where this page cannot play it
    stopPlayer();
    state.playing = name;
    $("player-panel").hidden = false;
    $("player-title").textContent = name;
    playerError("");
    for (const [channel, card] of state.cards) {
      card.root.classList.toggle("selected", channel === name);
    }
    $("player-panel").scrollIntoView({ block: "nearest" });
    // A player asking before the first segment would only get 404s: wait for the poll
    // that says the playlist is ready (null: another node's, not known here; try it).
    state.waiting = stream.playlist_ready === false;
    if (state.waiting) updatePlayerState();
    else startPlayback(stream);
  }

  function startPlayback(stream) {
    state.waiting = false;
    const cannot = unplayable(stream);
    if (cannot) {
      const address = new URL(stream.playback_url, window.location.href).href;
      giveUp(`${cannot} The stream itself is fine: open ${address} in a player that can ` +
        "(Safari, VLC, mpv).");
      return;
    }
    updatePlayerState();
    const videoEl = $("player");
    videoEl.muted = true; // autoplay without a gesture needs a muted video
    videoEl.onplaying = () => playerError(""); // recovered, or never failed
    // LL-HLS (fMP4 parts, blocking reloads) when the server offers it; index.m3u8 otherwise.
    const lowLatency = Boolean(stream.ll_playback_url);
    const url = lowLatency ? stream.ll_playback_url : stream.playback_url;
    if (window.Hls && window.Hls.isSupported()) {
      const hls = new window.Hls({
        liveDurationInfinity: true,
        lowLatencyMode: lowLatency,
        // hls.js starts behind its target (PART-HOLD-BACK) by however long the first parts
        // took to load; at rate 1 it never makes that up (measured: ~0.5 s for good).
        // Playing up to 1.5x while more than that is buffered brings it back.
        maxLiveSyncPlaybackRate: lowLatency ? LL_CATCH_UP_RATE : 1,
      });
      state.hls = hls;
      let mediaRecoveries = 0;
      hls.on(window.Hls.Events.ERROR, (_event, data) => {
        state.hlsErrors.push({ type: data.type, details: data.details, fatal: data.fatal,
          reason: data.reason || (data.error && data.error.message) || "" });
        if (!data.fatal || state.hls !== hls) return;
        if (CODEC_ERRORS.has(data.details)) {
          giveUp(`This browser cannot decode this stream (${data.details}: ` +
            `${data.reason || "unsupported codec"}). Open ${url} in another player.`);
          return;
        }
        if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          mediaRecoveries += 1;
          if (mediaRecoveries > MAX_MEDIA_RECOVERIES) {
            giveUp(`Playback failed: ${data.details}. Click the channel to try again.`);
            return;
          }
          playerError(`playback error: ${data.details} (recovering)`);
          hls.recoverMediaError();
        } else {
          playerError(`playback error: ${data.details} (retrying)`);
        }
        if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR) {
          // A playlist that failed to load is loaded again; lost segments resume loading.
          setTimeout(() => {
            if (state.hls !== hls) return;
            if (data.details.startsWith("manifest")) hls.loadSource(url);
            else hls.startLoad();
          }, RETRY_MS);
        }
      });
      let aligned = false;
      const startWhereBothTracksAre = () => {
        // A segment's video starts a B-frame delay (~67 ms at 30 fps) after its audio. When
        // the playlist is still shorter than hls.js's live offset it starts at 0, inside that
        // gap, and stalls until its gap skipper steps over it; start where both tracks are.
        // Checked on each append, not only once the fragment is buffered: the skipper's
        // timer can run between the second track's append (the first moment both tracks
        // are buffered) and FRAG_BUFFERED.
        if (aligned || !videoEl.buffered.length) return;
        aligned = true;
        const start = videoEl.buffered.start(0);
        if (videoEl.currentTime < start && start - videoEl.currentTime < 1) {
          videoEl.currentTime = start;
        }
      };
      hls.on(window.Hls.Events.BUFFER_APPENDED, startWhereBothTracksAre);
      hls.on(window.Hls.Events.FRAG_BUFFERED, startWhereBothTracksAre);
      hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
        videoEl.play().catch((err) => {
          // Giving up unloads the video, which rejects play(): that is not the news.
          if (state.hls === hls) playerError(`autoplay refused: ${err.message}`);
        });
      });
      hls.loadSource(url);
      hls.attachMedia(videoEl);
    } else if (videoEl.canPlayType("application/vnd.apple.mpegurl")) {
      videoEl.src = url; // Safari plays HLS natively
      videoEl.play().catch((err) => playerError(`autoplay refused: ${err.message}`));
    } else {
      playerError("this browser cannot play HLS here: hls.js is not installed on the server");
    }
  }

  // ---- management through the control API ---------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function showUnlocked() {
    const unlocked = Boolean(token());
    $("token-form").hidden = unlocked;
    $("token-set").hidden = !unlocked;
    $("manage").hidden = !unlocked;
    for (const card of state.cards.values()) card.refs.actions.hidden = !unlocked;
  }

  function lock() {
    sessionStorage.removeItem(TOKEN_KEY);
    $("channel-rows").replaceChildren();
    hideSecret();
    showUnlocked();
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${token()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(state.apiPrefix + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    if (res.status === 401) {
      lock();
      throw new Error("the API token was refused: enter it again");
    }
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (!res.ok) {
      throw new Error((data && data.error && data.error.message) || `HTTP ${res.status}`);
    }
    return data;
  }

  async function act(what, work) {
    try {
      await work();
      notice("");
    } catch (err) {
      notice(`${what} failed: ${err.message}`);
    }
  }

  async function loadChannels() {
    const data = await api("GET", "/channels");
    const rows = data.channels.map((channel) => {
      const actions = el("td", {},
        el("button", { type: "button", text: "Rotate key",
          onclick: () => rotate(channel.name) }));
      if (channel.live) {
        actions.append(el("button", { type: "button", class: "danger", text: "Kick",
          onclick: () => kick(channel.name) }));
      }
      const rotated = channel.key_rotated_at || channel.created_at;
      return el("tr", { "data-channel": channel.name },
        el("td", { text: channel.name }),
        el("td", { text: channel.live ? "live" : "offline" }),
        el("td", { text: rotated ? new Date(rotated * 1000).toLocaleString() : "–" }),
        actions);
    });
    $("channel-rows").replaceChildren(...rows);
  }

  function showSecret(credentials) {
    $("secret-channel").textContent = credentials.name;
    $("secret-server").textContent = credentials.rtmp_url;
    $("secret-key").textContent = credentials.stream_key;
    $("secret-playback").textContent = credentials.playback_url;
    $("secret").hidden = false;
  }

  function hideSecret() {
    for (const id of ["secret-channel", "secret-server", "secret-key", "secret-playback"]) {
      $(id).textContent = "";
    }
    $("secret").hidden = true;
  }

  function rotate(name) {
    if (!confirm(`Rotate the stream key of ${name}? The old key stops working at once and a live publisher is disconnected.`)) return;
    act("rotating the key", async () => {
      showSecret(await api("POST", `/channels/${encodeURIComponent(name)}/key`));
      await loadChannels();
    });
  }

  function kick(name) {
    if (!confirm(`Disconnect the publisher of ${name}?`)) return;
    act("kicking the publisher", async () => {
      await api("DELETE", `/streams/${encodeURIComponent(name)}`);
      await loadChannels();
    });
  }

  // ---- wiring -------------------------------------------------------------------------

  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token-input").value.trim();
    $("token-input").value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    showUnlocked();
    act("checking the token", loadChannels);
  });
  $("token-clear").addEventListener("click", lock);
  $("create-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("create-name").value.trim();
    act("creating the channel", async () => {
      showSecret(await api("POST", "/channels", { name }));
      $("create-name").value = "";
      await loadChannels();
    });
  });
  $("secret-hide").addEventListener("click", hideSecret);
  $("player-close").addEventListener("click", () => {
    stopPlayer();
    $("player-panel").hidden = true;
    for (const card of state.cards.values()) card.root.classList.remove("selected");
  });

  showUnlocked();
  if (token()) act("loading channels", loadChannels);
  poll();
})();
