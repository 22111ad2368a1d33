"""The attribute vocabulary of the synthetic catalog.

Kind -> value (named verbatim in titles) -> the noun phrases descriptions may
use for it.
"""

from __future__ import annotations

ATTRIBUTE_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    'sleeve': {
        'sleeveless': ('no sleeves', 'a sleeveless cut', 'open armholes'),
        'short-sleeve': ('short sleeves', 'a short-sleeved cut', 'short set-in sleeves'),
        'long-sleeve': ('long sleeves', 'a long-sleeved cut', 'full-length sleeves'),
    },
    'neckline': {
        'crew-neck': ('a crew neckline', 'a round crew neck', 'a crewneck collar'),
        'v-neck': ('a v-neckline', 'a v-neck', 'a v-shaped neckline'),
        'scoop-neck': ('a scoop neckline', 'a deep scoop neck', 'a rounded scoop neck'),
        'turtleneck': ('a turtleneck', 'a high roll neck', 'a ribbed turtleneck collar'),
        'straight-neck': (
            'a straight neckline',
            'a straight-cut bodice',
            'a straight-across neckline',
        ),
    },
    'strap': {
        'thin-strap': ('thin shoulder straps', 'spaghetti straps', 'slim straps'),
        'wide-strap': ('wide shoulder straps', 'broad straps', 'wide straps'),
    },
    'collar': {
        'point-collar': ('a point collar', 'a classic pointed collar', 'a spread point collar'),
        'band-collar': ('a band collar', 'a mandarin collar', 'a stand-up band collar'),
        'stand-collar': ('a stand collar', 'a high stand collar', 'a funnel collar'),
        'hooded': ('a hood', 'an attached hood', 'a padded hood'),
    },
    'fit': {
        'cropped': ('a cropped length', 'a cropped cut', 'a short cropped body'),
        'longline': ('a longline cut', 'an elongated body', 'a longline silhouette'),
        'fitted': ('a fitted shape', 'a close fit', 'a snug fit'),
        'slouchy': ('a slouchy shape', 'a relaxed slouchy crown', 'extra slouch at the back'),
    },
    'closure': {
        'pullover': (
            'a pullover design with a kangaroo pocket',
            'a kangaroo pouch pocket',
            'a pull-on style with a front pouch pocket',
        ),
        'zip-up': ('a full-length zip', 'a zip-up front', 'a front zipper'),
        'single-breasted': (
            'a single-breasted front',
            'single-breasted buttoning',
            'a single row of buttons',
        ),
        'double-breasted': (
            'a double-breasted front',
            'double-breasted buttoning',
            'two rows of buttons',
        ),
    },
    'lapel': {
        'notch-lapel': ('notch lapels', 'notched lapels', 'classic notch lapels'),
        'peak-lapel': ('peak lapels', 'peaked lapels', 'sharp peak lapels'),
    },
    'length': {
        'mini': ('a mini length', 'a short mini hem', 'a hem above the knee'),
        'midi': ('a midi length', 'a mid-calf hem', 'a midi hemline'),
        'maxi': ('a maxi length', 'a floor-sweeping hem', 'a full-length maxi hemline'),
        'knee-length': ('a knee-length cut', 'a hem at the knee', 'a knee-length hemline'),
        'ankle-length': ('an ankle-length cut', 'a hem at the ankle', 'a long ankle-length body'),
        'mid-thigh': ('a mid-thigh length', 'a short inseam', 'a hem at mid-thigh'),
        'cropped': ('a cropped length', 'a cropped leg', 'legs cropped above the ankle'),
        'full-length': ('a full-length leg', 'full-length legs', 'legs that reach the ankle'),
    },
    'leg': {
        'slim-leg': ('a slim leg', 'a slim tapered leg', 'narrow legs'),
        'wide-leg': ('a wide leg', 'a relaxed wide leg', 'wide flared legs'),
    },
    'pocket': {
        'zip-pocket': ('zip pockets', 'zippered side pockets', 'zipped hip pockets'),
        'slant-pocket': ('slant pockets', 'slanted side pockets', 'angled hip pockets'),
        'front-pocket': ('a front pocket', 'an exterior front pocket', 'a pocket at front'),
        'pocketless': ('a clean front', 'no exterior pockets', 'a pocket-free front'),
    },
    'hem': {
        'cuffed': ('cuffed hems', 'turned-up cuffs', 'rolled cuffs'),
        'plain-hem': ('plain hems', 'clean stitched hems', 'simple hems'),
    },
    'cuff': {
        'cuffed': ('a turned-up cuff', 'a folded cuff', 'a wide ribbed cuff'),
        'uncuffed': ('no cuff', 'a plain ribbed edge', 'an unturned edge'),
    },
    'belt': {
        'belted': ('a belt with a buckle', 'a buckled belt at the waist', 'a matching belt'),
        'unbelted': ('a plain waistband', 'a clean waistband', 'no belt'),
    },
    'height': {
        'low-top': ('a low-top profile', 'a low-cut collar', 'a low ankle collar'),
        'high-top': ('a high-top profile', 'an ankle-high collar', 'a high ankle collar'),
        'ankle': ('an ankle-height shaft', 'an ankle shaft', 'a shaft ending at the ankle'),
        'knee-high': ('a knee-high shaft', 'a tall shaft reaching the knee', 'a knee-length shaft'),
        'low-profile': ('a low-profile crown', 'a shallow crown', 'a low crown'),
        'high-profile': ('a high-profile crown', 'a tall crown', 'a deep crown'),
    },
    'fastening': {
        'lace-up': ('lace-up fastening', 'laces', 'a lace-up front'),
        'velcro-strap': ('velcro straps', 'hook-and-loop straps', 'touch-strap fastening'),
    },
    'heel': {
        'flat': ('a flat heel', 'a flat sole', 'a low flat heel'),
        'mid-heel': ('a mid heel', 'a mid-height heel', 'a medium heel'),
        'high-heel': ('a high heel', 'a tall heel', 'a towering heel'),
    },
    'toe': {
        'pointed-toe': ('a pointed toe', 'a pointy toe', 'a sharp pointed toe'),
        'round-toe': ('a round toe', 'a rounded toe', 'a soft round toe'),
    },
    'vamp': {
        'penny-strap': ('a penny strap', 'a penny-keeper strap', 'a strap across the vamp'),
        'tassel': ('tassels', 'tassel trims', 'decorative tassels'),
        'horsebit': ('a horsebit', 'a metal horsebit', 'a gold-tone horsebit'),
    },
    'handle': {
        'short-handle': ('short handles', 'twin short handles', 'short top handles'),
        'long-handle': ('long handles', 'shoulder-length handles', 'long shoulder straps'),
    },
    'flap': {
        'zip-top': ('a zip top', 'a zippered top closure', 'a zip-around top'),
        'flap-top': ('a flap top', 'a buckled top flap', 'a flap closure with buckles'),
        'envelope-flap': ('an envelope flap', 'a triangular flap', 'a pointed envelope flap'),
        'rounded-flap': ('a rounded flap', 'a curved flap', 'a half-moon flap'),
    },
    'bag_strap': {
        'chain-strap': ('a chain strap', 'a metal chain strap', 'a gold-tone chain strap'),
        'leather-strap': ('a leather strap', 'a slim leather strap', 'a smooth leather strap'),
    },
    'brim': {
        'curved-brim': ('a curved brim', 'a pre-curved visor', 'a bent brim'),
        'flat-brim': ('a flat brim', 'a straight flat visor', 'a flat peak'),
    },
}
