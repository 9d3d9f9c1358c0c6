"""Energy profiles of simulated meters: rooftop solar, households and prosumers.

Everything here is a pure function of (seed, meter name, profile, time): the same seed gives the same
watts at the same instant, on any machine, in any order of calls. There is no hidden random state, so a
meter restarted half way through a day reports exactly what it would have reported without the restart.

Power is sampled once a minute (at the middle of each minute) and integrated over the interval; an
interval's energy is rounded down to whole Wh. Every sample is capped by the meter's rated power, so no
interval can exceed `rated_w * interval_s / 3600` (the ledger's `energy_exceeds_rating` bound).

Physics, kept simple but shaped like the real thing:
  * solar: the sun's elevation from latitude, longitude and day of year (declination, hour angle), an air
    mass penalty (irradiance ~ sin(elevation)^1.15), system losses, an array 25% larger than the inverter
    (so a clear summer noon clips at the rated power, as real inverters do), and clouds: a daily weather
    type (clear, broken, overcast) from the seed, with smooth regional and local cloud noise on top;
  * households: a base load, a morning peak, a smaller midday bump, a large evening peak and a late
    evening tail (Japanese daily load shape), scaled per household, with smooth noise and short appliance
    spikes (kettle, dryer, induction hob);
  * prosumers: both of the above behind one bidirectional meter; each minute's net flow goes to the
    export or the import register, so one interval can carry both (clouds at noon, cooking at dusk).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

SAMPLE_S = 60  # integration step: one power sample per minute
SOLAR, HOUSEHOLD, PROSUMER = "solar", "household", "prosumer"
PROFILES = (SOLAR, HOUSEHOLD, PROSUMER)
DC_AC_RATIO = 1.25  # panel capacity per inverter watt: clear noons clip at the rating
SYSTEM_LOSSES = 0.86  # wiring, temperature, soiling, inverter


@dataclass(frozen=True)
class Site:
    """Where the simulated meters are: the sun follows latitude/longitude, people follow the local clock."""
    latitude: float = 35.68  # Tokyo
    longitude: float = 139.77
    tz_offset_s: int = 9 * 3600  # JST

    def to_json(self) -> dict[str, float | int]:
        return {"latitude": self.latitude, "longitude": self.longitude, "tz_offset_s": self.tz_offset_s}

    @classmethod
    def from_json(cls, data: dict[str, float | int]) -> "Site":
        return cls(float(data["latitude"]), float(data["longitude"]), int(data["tz_offset_s"]))


@dataclass(frozen=True)
class Profile:
    """How one meter's site behaves. `pv_w` is the panel (DC) capacity, `load_scale` sizes the household."""
    kind: str  # SOLAR, HOUSEHOLD or PROSUMER
    rated_w: int  # the meter's (and inverter's) rating: no sample exceeds it
    pv_w: int = 0
    load_scale: float = 1.0


def unit(*key: object) -> float:
    """A deterministic number in [0, 1) for `key` (a seeded hash, not a random generator)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _smooth(t: float, period: float, *key: object) -> float:
    """Value noise in [0, 1): seeded knots every `period` seconds, smoothstep between them."""
    k = math.floor(t / period)
    f = t / period - k
    a, b = unit(*key, k), unit(*key, k + 1)
    f = f * f * (3 - 2 * f)
    return a + (b - a) * f


# ------------------------------------------------------------------------------------------------ sun


def sun_elevation_sin(t: float, site: Site) -> float:
    """sin(solar elevation) at unix time t (negative at night). Good to a degree or so: enough for a curve."""
    days = t / 86400.0
    doy = (days - 10957.0) % 365.2422  # days since 2000-01-01, within the year
    declination = math.radians(23.44) * math.sin(2 * math.pi * (doy - 80.0) / 365.2422)
    solar_hours = (t / 3600.0 + site.longitude / 15.0) % 24.0
    hour_angle = math.radians(15.0 * (solar_hours - 12.0))
    lat = math.radians(site.latitude)
    return math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(declination) * math.cos(hour_angle)


def cloudiness(t: float, seed: int, name: str, site: Site) -> float:
    """Cloud cover in [0, 1]: a daily weather type shared by the whole region, smooth regional drift, and a
    little local variation per meter (a passing cloud shades one roof before the next)."""
    day = math.floor((t + site.tz_offset_s) / 86400)
    weather = unit(seed, "weather", day)
    if weather < 0.45:
        base, amplitude = 0.08, 0.15  # clear, a few clouds
    elif weather < 0.8:
        base, amplitude = 0.45, 0.9  # broken clouds: big swings
    else:
        base, amplitude = 0.85, 0.3  # overcast
    regional = _smooth(t, 1800.0, seed, "cloud", day) - 0.5
    local = _smooth(t, 600.0, seed, "cloud", name) - 0.5
    return min(1.0, max(0.0, base + amplitude * regional + 0.2 * local))


def solar_w(t: float, pv_w: int, rated_w: int, seed: int, name: str, site: Site) -> float:
    """AC output of a rooftop array at time t: zero at night, bell-shaped around solar noon, clouds, clipped."""
    s = sun_elevation_sin(t, site)
    if s <= 0.0 or pv_w <= 0:
        return 0.0
    clear = s**1.15 * SYSTEM_LOSSES
    shade = 1.0 - 0.8 * cloudiness(t, seed, name, site)
    return min(float(rated_w), pv_w * clear * shade)


# ------------------------------------------------------------------------------------------ households


def _bump(h: float, centre: float, width: float) -> float:
    """A daily peak around `centre` o'clock, wrapping at midnight."""
    d = (h - centre + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (d / width) ** 2)


def household_w(t: float, scale: float, rated_w: int, seed: int, name: str, site: Site) -> float:
    """A household's draw at time t: base load, morning and evening peaks, noise and appliance spikes."""
    h = ((t + site.tz_offset_s) / 3600.0) % 24.0
    shape = (220.0 + 950.0 * _bump(h, 7.2, 0.8) + 380.0 * _bump(h, 12.3, 1.4) + 1700.0 * _bump(h, 19.4, 1.5)
             + 450.0 * _bump(h, 22.4, 0.9))
    noise = 0.75 + 0.5 * _smooth(t, 300.0, seed, "load", name)
    watts = scale * shape * noise
    awake = 0.15 if 1.0 <= h < 6.0 else 1.0
    slot = math.floor(t / 300)
    if unit(seed, "spike", name, slot) < 0.07 * awake:  # a kettle, dryer or hob for five minutes
        watts += 1200.0 + 1300.0 * unit(seed, "spike-size", name, slot)
    return min(float(rated_w), watts)


# ------------------------------------------------------------------------------------------- intervals


def interval_energy(profile: Profile, seed: int, name: str, start: int, interval_s: int,
                    site: Site = Site()) -> tuple[int, int]:
    """(export_wh, import_wh) of one interval [start, start + interval_s), integrated minute by minute."""
    export_ws = import_ws = 0.0
    for i in range(interval_s // SAMPLE_S):
        t = start + i * SAMPLE_S + SAMPLE_S / 2
        if profile.kind == SOLAR:
            export_ws += solar_w(t, profile.pv_w, profile.rated_w, seed, name, site) * SAMPLE_S
        elif profile.kind == HOUSEHOLD:
            import_ws += household_w(t, profile.load_scale, profile.rated_w, seed, name, site) * SAMPLE_S
        else:
            net = solar_w(t, profile.pv_w, profile.rated_w, seed, name, site) \
                - household_w(t, profile.load_scale, profile.rated_w, seed, name, site)
            if net >= 0:
                export_ws += net * SAMPLE_S
            else:
                import_ws -= net * SAMPLE_S
    limit = profile.rated_w * interval_s // 3600
    return min(limit, int(export_ws // 3600)), min(limit, int(import_ws // 3600))


def make_profile(kind: str, seed: int, name: str) -> Profile:
    """A plausible installation of `kind` (ratings and sizes drawn from the seed)."""
    u = unit(seed, "size", name)
    if kind == SOLAR:
        ratings = (3000, 4000, 4500, 5000, 5500, 6000, 8000, 10000, 49500)  # 49.5 kW: a low-voltage plant
        rated = ratings[int(u * len(ratings))]
        return Profile(SOLAR, rated, pv_w=int(rated * DC_AC_RATIO))
    if kind == HOUSEHOLD:
        return Profile(HOUSEHOLD, 6000, load_scale=round(0.6 + 0.9 * u, 3))  # a 60 A, 100 V contract
    if kind == PROSUMER:
        pv = (3500, 4500, 5500, 6500)[int(u * 4)]
        return Profile(PROSUMER, 8000, pv_w=int(pv * DC_AC_RATIO),
                       load_scale=round(0.7 + 0.7 * unit(seed, "load-size", name), 3))
    raise ValueError(f"unknown profile {kind!r}; one of {PROFILES}")
