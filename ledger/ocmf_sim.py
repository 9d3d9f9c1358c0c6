"""A simulated OCMF meter (tests, bench, devnet): it signs records the way a real one does, with its own
key and curve, its paging and its registers. Not used by a node's consensus path."""
from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec

from . import ocmf

KWH_MWH = 1_000_000


def _kwh(mwh: int) -> str:
    """Exact kWh text of a milli-Wh value (a JSON number, never a float)."""
    whole, frac = divmod(mwh, KWH_MWH)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") if frac else f"{whole}.00"


@dataclass
class OcmfMeterSim:
    """One meter: `record()` signs the next record (paging +1) at a time with register values."""
    serial: str
    curve: str = "secp256r1"
    private: ec.EllipticCurvePrivateKey | None = None
    mint_register: str = "2.8.0"
    consume_register: str = ""
    paging: int = 0
    vendor: str = "kwhledger-sim"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.private is None:
            self.private = ec.generate_private_key(ocmf.CURVES[self.curve]())

    @property
    def spki(self) -> bytes:
        return ocmf.spki_of(self.private)  # type: ignore[arg-type]

    def payload(self, time_ms: int, mint_mwh: int = 0, consume_mwh: int = 0, status: str = "G", flags: str = "",
                clock: str = "S", paging: str | None = None, tx: str = "C") -> str:
        """The payload text the meter signs (compact JSON, values in kWh as exact decimals)."""
        tm = ocmf.format_time(time_ms, clock, 60)
        readings = []
        for reg, value in ((self.mint_register, mint_mwh), (self.consume_register, consume_mwh)):
            if reg:
                readings.append(f'{{"TM":"{tm}","TX":"{tx}","RV":{_kwh(value)},"RI":"1-0:{reg}","RU":"kWh",'
                                f'"RT":"AC","EF":"{flags}","ST":"{status}"}}')
        pg = paging if paging is not None else f"T{self.paging}"
        return (f'{{"FV":"1.0","GI":"{self.vendor}","GS":"{self.serial}","GV":"1.0","PG":"{pg}",'
                f'"MV":"{self.vendor}","MM":"{self.curve}","MS":"{self.serial}","IS":false,"IL":"NONE",'
                f'"IF":[],"IT":"NONE","ID":"","RD":[{",".join(readings)}]}}')

    def record(self, time_ms: int, mint_mwh: int = 0, consume_mwh: int = 0, algorithm: str | None = None,
               advance: bool = True, **kw: str) -> str:
        """Sign the next record; `advance=False` signs without moving the paging on (to build variants)."""
        if advance:
            self.paging += 1
            kw.setdefault("paging", f"T{self.paging}")
        else:
            kw.setdefault("paging", f"T{self.paging + 1}")
        return ocmf.sign(self.private, self.payload(time_ms, mint_mwh, consume_mwh, **kw),  # type: ignore[arg-type]
                         algorithm)
