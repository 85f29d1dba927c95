"""Value lists the kit ships for the slots of tool examples (``{city}``, ``{day}``...).

A slot of a tool example takes its values from, in order: the ``values`` the tool lists for the
property in ``tool.json``, the property's ``enum``, or one of these lists, chosen by the name
``values`` gives (``"cities"``) or, failing that, by the property's name (``city`` -> cities).
Each list maps what is said (lowercase words) to the value the tool receives.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Mapping

__all__ = ["KIT_LISTS", "kit_list", "list_for_property", "number_words"]

CITIES = (
    "Tokyo, Delhi, Shanghai, Dhaka, Sao Paulo, Cairo, Mexico City, Beijing, Mumbai, Osaka, "
    "Chongqing, Karachi, Kinshasa, Lagos, Istanbul, Buenos Aires, Kolkata, Manila, Tianjin, "
    "Guangzhou, Rio de Janeiro, Lahore, Bangalore, Shenzhen, Moscow, Chennai, Bogota, Paris, "
    "Jakarta, Lima, Bangkok, Hyderabad, Seoul, Nagoya, London, Chengdu, Nanjing, Tehran, "
    "Ho Chi Minh City, Luanda, New York, Wuhan, Xian, Ahmedabad, Kuala Lumpur, Hangzhou, "
    "Hong Kong, Dongguan, Foshan, Shenyang, Riyadh, Baghdad, Santiago, Surat, Madrid, Suzhou, "
    "Pune, Harbin, Houston, Dallas, Toronto, Dar es Salaam, Miami, Belo Horizonte, Singapore, "
    "Philadelphia, Atlanta, Fukuoka, Khartoum, Barcelona, Johannesburg, Saint Petersburg, "
    "Qingdao, Dalian, Washington, Yangon, Alexandria, Jinan, Guadalajara, Abidjan, Ankara, "
    "Chicago, Los Angeles, Melbourne, Sydney, Monterrey, Nairobi, Hanoi, Brasilia, Cape Town, "
    "Jeddah, Berlin, Rome, Casablanca, Kabul, Algiers, Boston, Phoenix, Detroit, Montreal, "
    "Seattle, San Francisco, San Diego, Minneapolis, Denver, Baltimore, Saint Louis, Tampa, "
    "Vancouver, Lisbon, Athens, Milan, Naples, Manchester, Birmingham, Hamburg, Munich, "
    "Frankfurt, Cologne, Vienna, Budapest, Warsaw, Prague, Bucharest, Kiev, Minsk, Stockholm, "
    "Copenhagen, Oslo, Helsinki, Dublin, Amsterdam, Rotterdam, Brussels, Zurich, Geneva, "
    "Lyon, Marseille, Lille, Toulouse, Bordeaux, Nice, Nantes, Strasbourg, Valencia, Seville, "
    "Porto, Turin, Florence, Venice, Glasgow, Edinburgh, Liverpool, Leeds, Bristol, Sofia, "
    "Belgrade, Zagreb, Riga, Vilnius, Tallinn, Dubai, Abu Dhabi, Doha, Kuwait City, Amman, "
    "Beirut, Jerusalem, Tel Aviv, Baku, Tashkent, Almaty, Islamabad, Colombo, Kathmandu, "
    "Taipei, Busan, Sapporo, Kyoto, Yokohama, Perth, Brisbane, Adelaide, Auckland, "
    "Wellington, Honolulu, Anchorage, Havana, Caracas, Quito, La Paz, Montevideo, Panama City, "
    "San Jose, Guatemala City, Santo Domingo, Calgary, Ottawa, Edmonton, Las Vegas, Austin, "
    "Portland, Nashville, Orlando, New Orleans, Pittsburgh, Cleveland, Accra, Dakar, "
    "Addis Ababa, Kampala, Tunis, Tripoli, Durban"
)

COUNTRIES = (
    "Afghanistan, Albania, Algeria, Andorra, Angola, Argentina, Armenia, Australia, Austria, "
    "Azerbaijan, Bahamas, Bahrain, Bangladesh, Barbados, Belarus, Belgium, Belize, Benin, "
    "Bhutan, Bolivia, Bosnia, Botswana, Brazil, Brunei, Bulgaria, Burkina Faso, Burundi, "
    "Cambodia, Cameroon, Canada, Chad, Chile, China, Colombia, Comoros, Congo, Costa Rica, "
    "Croatia, Cuba, Cyprus, Czechia, Denmark, Djibouti, Dominica, Ecuador, Egypt, El Salvador, "
    "Eritrea, Estonia, Eswatini, Ethiopia, Fiji, Finland, France, Gabon, Gambia, Georgia, "
    "Germany, Ghana, Greece, Grenada, Guatemala, Guinea, Guyana, Haiti, Honduras, Hungary, "
    "Iceland, India, Indonesia, Iran, Iraq, Ireland, Israel, Italy, Jamaica, Japan, Jordan, "
    "Kazakhstan, Kenya, Kiribati, Kosovo, Kuwait, Kyrgyzstan, Laos, Latvia, Lebanon, Lesotho, "
    "Liberia, Libya, Liechtenstein, Lithuania, Luxembourg, Madagascar, Malawi, Malaysia, "
    "Maldives, Mali, Malta, Mauritania, Mauritius, Mexico, Moldova, Monaco, Mongolia, "
    "Montenegro, Morocco, Mozambique, Myanmar, Namibia, Nauru, Nepal, Netherlands, "
    "New Zealand, Nicaragua, Niger, Nigeria, North Korea, North Macedonia, Norway, Oman, "
    "Pakistan, Palau, Panama, Papua New Guinea, Paraguay, Peru, Philippines, Poland, Portugal, "
    "Qatar, Romania, Russia, Rwanda, Samoa, San Marino, Saudi Arabia, Senegal, Serbia, "
    "Seychelles, Sierra Leone, Singapore, Slovakia, Slovenia, Somalia, South Africa, "
    "South Korea, South Sudan, Spain, Sri Lanka, Sudan, Suriname, Sweden, Switzerland, Syria, "
    "Taiwan, Tajikistan, Tanzania, Thailand, Togo, Tonga, Trinidad, Tunisia, Turkey, "
    "Turkmenistan, Tuvalu, Uganda, Ukraine, United Arab Emirates, United Kingdom, "
    "United States, Uruguay, Uzbekistan, Vanuatu, Venezuela, Vietnam, Yemen, Zambia, Zimbabwe"
)

DAYS = "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday, today, tomorrow"
TIMES_OF_DAY = "morning, noon, afternoon, evening, night, midnight, tonight"

_UNITS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _split(names: str) -> dict[str, str]:
    return {name.strip().lower(): name.strip() for name in names.split(",")}


def number_words() -> dict[str, int]:
    """Spoken numbers from zero to one hundred (``"twenty one"`` -> 21)."""
    words = {word: value for value, word in enumerate(_UNITS)}
    for index, tens in enumerate(_TENS):
        value = 20 + 10 * index
        words[tens] = value
        for unit in range(1, 10):
            words[f"{tens} {_UNITS[unit]}"] = value + unit
    words["one hundred"] = words["a hundred"] = 100
    return words


def _timezones() -> dict[str, str]:
    """The kit's cities whose time zone is known (``"tokyo"`` -> ``"Asia/Tokyo"``): those an
    IANA zone is named after, and others where the zone is obvious. Only these, not every IANA
    place: hundreds of small places make a recognizer hear "Perth" for "Paris"."""
    available = zoneinfo.available_timezones()
    named: dict[str, str] = {}
    for zone in sorted(available):
        area, _, place = zone.partition("/")
        if place and area not in {"Etc", "SystemV", "US"} and "/" not in place:
            named.setdefault(place.replace("_", " ").lower(), zone)
    extra = {
        "lyon": "Europe/Paris",
        "marseille": "Europe/Paris",
        "lille": "Europe/Paris",
        "toulouse": "Europe/Paris",
        "bordeaux": "Europe/Paris",
        "nice": "Europe/Paris",
        "munich": "Europe/Berlin",
        "hamburg": "Europe/Berlin",
        "frankfurt": "Europe/Berlin",
        "cologne": "Europe/Berlin",
        "barcelona": "Europe/Madrid",
        "seville": "Europe/Madrid",
        "valencia": "Europe/Madrid",
        "milan": "Europe/Rome",
        "naples": "Europe/Rome",
        "florence": "Europe/Rome",
        "venice": "Europe/Rome",
        "turin": "Europe/Rome",
        "porto": "Europe/Lisbon",
        "geneva": "Europe/Zurich",
        "rotterdam": "Europe/Amsterdam",
        "manchester": "Europe/London",
        "birmingham": "Europe/London",
        "edinburgh": "Europe/London",
        "glasgow": "Europe/London",
        "liverpool": "Europe/London",
        "leeds": "Europe/London",
        "bristol": "Europe/London",
        "san francisco": "America/Los_Angeles",
        "seattle": "America/Los_Angeles",
        "san diego": "America/Los_Angeles",
        "las vegas": "America/Los_Angeles",
        "portland": "America/Los_Angeles",
        "boston": "America/New_York",
        "washington": "America/New_York",
        "miami": "America/New_York",
        "atlanta": "America/New_York",
        "philadelphia": "America/New_York",
        "baltimore": "America/New_York",
        "orlando": "America/New_York",
        "tampa": "America/New_York",
        "pittsburgh": "America/New_York",
        "cleveland": "America/New_York",
        "dallas": "America/Chicago",
        "houston": "America/Chicago",
        "austin": "America/Chicago",
        "minneapolis": "America/Chicago",
        "saint louis": "America/Chicago",
        "nashville": "America/Chicago",
        "new orleans": "America/Chicago",
        "ottawa": "America/Toronto",
        "calgary": "America/Edmonton",
        "beijing": "Asia/Shanghai",
        "guangzhou": "Asia/Shanghai",
        "shenzhen": "Asia/Shanghai",
        "mumbai": "Asia/Kolkata",
        "delhi": "Asia/Kolkata",
        "bangalore": "Asia/Kolkata",
        "chennai": "Asia/Kolkata",
        "hyderabad": "Asia/Kolkata",
        "osaka": "Asia/Tokyo",
        "kyoto": "Asia/Tokyo",
        "yokohama": "Asia/Tokyo",
        "busan": "Asia/Seoul",
        "rio de janeiro": "America/Sao_Paulo",
        "abu dhabi": "Asia/Dubai",
        "cape town": "Africa/Johannesburg",
        "durban": "Africa/Johannesburg",
    }
    spoken: dict[str, str] = {}
    for city in _split(CITIES):
        found = extra.get(city) or named.get(city)
        if found is not None and found in available:
            spoken[city] = found
    return spoken


@functools.cache
def kit_list(name: str) -> Mapping[str, object]:
    """One of the kit's lists by name; a KeyError names the lists there are."""
    match name:
        case "cities":
            return _split(CITIES)
        case "countries":
            return _split(COUNTRIES)
        case "days":
            return _split(DAYS)
        case "times":
            return _split(TIMES_OF_DAY)
        case "numbers":
            return number_words()
        case "timezones":
            return _timezones()
    raise KeyError(f"no value list {name!r}; the kit has {', '.join(KIT_LISTS)}")


KIT_LISTS = ("cities", "countries", "days", "times", "numbers", "timezones")

# A property named like this takes that list when tool.json names none.
_BY_PROPERTY = {
    "city": "cities",
    "town": "cities",
    "country": "countries",
    "day": "days",
    "weekday": "days",
    "time_of_day": "times",
    "number": "numbers",
    "count": "numbers",
    "quantity": "numbers",
    "timezone": "timezones",
    "time_zone": "timezones",
    "tz": "timezones",
}


def list_for_property(name: str) -> str | None:
    return _BY_PROPERTY.get(name.lower())
